//! DSL mistakes are compile errors pointing at the offending token; the expected messages
//! are locked by the `.stderr` files in tests/ui.

#[test]
fn dsl_mistakes_are_compile_errors_at_the_right_token() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
