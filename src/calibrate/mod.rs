//! `edge profile calibrate`: measures this machine (memory and SSD bandwidth, timed
//! decodes of real and synthetic models) and fits the planner's CPU cost model to it, and
//! its GPU's factors where there is one.
//! It sits above the planner: it runs models through the engine, compares the planner's
//! predictions with the measured speed, and writes a profile the planner then reads.

pub mod gpu;
pub mod measure;
pub mod run;
