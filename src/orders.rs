//! Sales: claims turned into orders, prices in integer minor units, and the rules for creating, listing, updating and cancelling them.
