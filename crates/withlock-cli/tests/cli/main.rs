//! Integration tests that drive the real `withlock` binary.
