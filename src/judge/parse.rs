//! Model text -> `Parsed` verdict. Pure: no IO, no async.
