//! Proc-macros of the GRETA kernel DSL.
