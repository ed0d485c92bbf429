//! Serving over the OpenAI API. So far: the request bodies, checked field by field
//! ([`api`]); the HTTP server and the scheduler build on it.

pub mod api;
