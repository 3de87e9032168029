// The dashboard script of tiklive serve.
