//! The handlebars templates (file skeleton, per-dialect preludes, helper library), embedded
//! in the binary and rendered in strict mode with escaping off (HTML escaping would corrupt
//! `<` and `&&` in C++).

use handlebars::Handlebars;
use std::sync::OnceLock;

const KERNEL: &str = include_str!("../../../templates/kernel.hip.hbs");
const PRELUDE_HIP: &str = include_str!("../../../templates/prelude_hip.hbs");
const PRELUDE_CUDA: &str = include_str!("../../../templates/prelude_cuda.hbs");
const HELPERS: &str = include_str!("../../../templates/helpers.hbs");

/// The registry with every template registered.
pub fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in [
            ("kernel", KERNEL),
            ("prelude_hip", PRELUDE_HIP),
            ("prelude_cuda", PRELUDE_CUDA),
            ("helpers", HELPERS),
        ] {
            hb.register_template_string(name, text)
                .unwrap_or_else(|e| panic!("embedded template `{name}` is malformed: {e}"));
        }
        hb
    })
}
