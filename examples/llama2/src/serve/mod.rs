//! Serving over the OpenAI API. So far: the request bodies, checked field by field
//! ([`api`]), and the reply text as a client may see it ([`text`]); the HTTP server and
//! the scheduler build on them.

pub mod api;
pub mod text;
