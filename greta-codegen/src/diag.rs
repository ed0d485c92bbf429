//! Diagnostics: a message tied to a DSL source position.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A source position: 1-based line and column in the DSL file, plus the macro's handle for
/// pointing a compile error at the original token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    #[serde(rename = "l")]
    pub line: u32,
    #[serde(rename = "c")]
    pub col: u32,
    #[serde(rename = "i")]
    pub id: u32,
}

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
