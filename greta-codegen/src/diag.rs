//! Diagnostics: a message tied to a DSL source position.

use crate::ast::Span;
use std::fmt;

/// One problem found in a kernel, pointing at the DSL token responsible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Span,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
        }
    }
}

/// All problems found in one kernel, with the file they refer to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    pub file: String,
    pub kernel: String,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: in kernel `{}`: {}",
                self.file,
                d.span.line,
                d.span.col + 1,
                self.kernel,
                d.message
            )?;
        }
        Ok(())
    }
}
