//! What the `*_bound` examples share: their numeric arguments and the CPU
//! time they report.

/// The `i`th argument after the program's name as a number, `default`
/// when absent.
pub fn arg(args: &[String], i: usize, default: usize) -> usize {
    args.get(i)
        .map(|a| a.parse().expect("a number"))
        .unwrap_or(default)
}

/// This process's CPU time (all threads), in nanoseconds.
pub fn cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
