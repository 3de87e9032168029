//! CSV export of the stored history: the kinds, their columns, the filters and the writer.
