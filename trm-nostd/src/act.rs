//! The ACT step schedule, independent of the number format.
//!
//! Both engines ([`FloatEngine`](crate::FloatEngine) and [`FixedEngine`](crate::FixedEngine))
//! implement [`Recurrence`]: an engine owns x, y, z and one network; this module owns the order in
//! which the network is applied ([`act_step_cycles`]) and when a solve stops ([`should_stop`]),
//! so the two engines cannot drift apart on the schedule.

/// One network applied to the carried states of an engine.
pub trait Recurrence {
    /// `z = net(z, y + x)` (the injection is computed as `y + x`, then added to `z`).
    fn update_z(&mut self);
    /// `y = net(y, z)`.
    fn update_y(&mut self);
}

/// The recursion of one ACT step: `h_cycles` times { `l_cycles` times `z = net(z, y + x)`;
/// `y = net(y, z)` } (the reference runs all but the last H cycle without gradients: the same
/// arithmetic at inference).
pub fn act_step_cycles<R: Recurrence + ?Sized>(engine: &mut R, h_cycles: u32, l_cycles: u32) {
    for _ in 0..h_cycles {
        for _ in 0..l_cycles {
            engine.update_z();
        }
        engine.update_y();
    }
}

/// When a solve stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HaltMode {
    /// Always `halt_max_steps` ACT steps (the reference's evaluation mode).
    AllSteps,
    /// Stop after the first step whose `q_halt` logit is positive, or at `halt_max_steps`
    /// (the reference's training-time rule without exploration; saves most of the compute).
    EarlyHalt,
}

/// Whether a solve stops after ACT step `step` (1-based) given the sign of that step's `q_halt`.
pub fn should_stop(mode: HaltMode, step: u32, halt_max_steps: u32, q_halt_positive: bool) -> bool {
    step >= halt_max_steps || (mode == HaltMode::EarlyHalt && q_halt_positive)
}
