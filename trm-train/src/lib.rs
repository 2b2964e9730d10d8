//! A libtorch trainer for Tiny Recursive Models.
#![deny(missing_docs)]
