//! [P] Health from probe results, with rise/fall hysteresis against flapping.
//!
//! A probe target starts up (a node must not withdraw its own POP at boot while its first
//! checks run). It goes down after `fall` consecutive failures and comes back after `rise`
//! consecutive successes. Nagios WARNING counts as a success: the service is degraded but
//! serving, and DNS steering is too coarse a tool for "slow".

/// One probe outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed (Nagios OK).
    Ok,
    /// Degraded but serving (Nagios WARNING).
    Warning(String),
    /// The check failed (Nagios CRITICAL or UNKNOWN, a refused connection, a timeout...).
    Failed(String),
}

impl Outcome {
    /// Whether this outcome counts as a success for hysteresis.
    pub fn passed(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

/// Up or down, as hysteresis decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Handed out.
    Up,
    /// Withdrawn.
    Down,
}

/// Rise/fall state of one probe target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    health: Health,
    /// Consecutive results contrary to `health`.
    streak: u32,
}

impl Hysteresis {
    /// Starts up; `rise` and `fall` are at least 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            health: Health::Up,
            streak: 0,
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one outcome; returns the new health if it changed.
    pub fn record(&mut self, outcome: &Outcome) -> Option<Health> {
        let contrary = match self.health {
            Health::Up => !outcome.passed(),
            Health::Down => outcome.passed(),
        };
        if !contrary {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match self.health {
            Health::Up => self.fall,
            Health::Down => self.rise,
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.health = match self.health {
            Health::Up => Health::Down,
            Health::Down => Health::Up,
        };
        Some(self.health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a sequence of results (`o` ok, `w` warning, `x` failed) and renders the health
    /// after each (`U`/`D`), marking transitions with `!`.
    fn run(rise: u32, fall: u32, results: &str) -> String {
        let mut h = Hysteresis::new(rise, fall);
        results
            .chars()
            .map(|c| {
                let outcome = match c {
                    'o' => Outcome::Ok,
                    'w' => Outcome::Warning("slow".into()),
                    _ => Outcome::Failed("refused".into()),
                };
                let changed = h.record(&outcome).is_some();
                let s = if h.health() == Health::Up { "U" } else { "D" };
                if changed {
                    format!("{s}!")
                } else {
                    s.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn falls_after_fall_failures_in_a_row_and_rises_after_rise_successes() {
        assert_eq!(run(2, 3, "xxxoox"), "U U D! D U! U");
        assert_eq!(run(2, 3, "xxoxxx"), "U U U U U D!");
    }

    #[test]
    fn flapping_never_crosses_the_threshold() {
        assert_eq!(run(2, 2, "xoxoxoxo"), "U U U U U U U U");
        assert_eq!(run(3, 1, "xoxoxooo"), "D! D D D D D D U!");
    }

    #[test]
    fn warnings_count_as_passing() {
        assert_eq!(run(1, 1, "wwxw"), "U U D! U!");
    }

    #[test]
    fn thresholds_of_zero_act_as_one() {
        assert_eq!(run(0, 0, "xo"), "D! U!");
    }
}
