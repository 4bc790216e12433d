//! The committee: fan-out of criteria to judges with quorum and deadlines; `vote.rs`
//! forms the consensus per criterion (pure). Must not know about scoring or storage.

pub mod vote;
