//! `edge profile calibrate`: measures this machine (memory and SSD bandwidth, timed
//! decodes of real and synthetic models) and fits the planner's CPU cost model to it.
//! It sits above the planner: it runs models through the engine, compares the planner's
//! predictions with the measured speed, and writes a profile the planner then reads.

pub mod measure;
pub mod run;
