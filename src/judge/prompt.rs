//! Judge prompt rendering (minijinja).
