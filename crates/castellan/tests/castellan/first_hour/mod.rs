//! Issue 23, "the first hour": what a new user meets in the first hour, each by the real binary.

mod checks;
mod compose;
mod compose_reload;
mod credential;
mod dev_up;
mod go_verifier;
mod owner;
mod quick_start;
