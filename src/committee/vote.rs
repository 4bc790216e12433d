//! Consensus per criterion from judge verdicts. Pure: no IO, no async.
