//! Which core the kernel is running on.

/// This core's index among the cores the kernel runs on (0 for the boot core).
pub fn index() -> usize {
    0
}
