//! Plugin JSON → validated, compiled configuration.
