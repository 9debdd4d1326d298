//! Scheduled key rotation: the window arithmetic, as pure functions of the key schedule and `now`.
//!
//! A key is `next` (published, not signing) from its insertion until `activate_at`, then `current`
//! until a newer key activates, then `retired` (still published) until `remove_at`. Rotation only
//! inserts keys whose `activate_at` lies at least `prepublish` in the future, so every verifier that
//! refreshes its JWKS at least every `prepublish / 2` has the key before the first token it signs, and
//! replicas need no coordination at the moment of the switch: each signs with the latest
//! `activate_at <= now`.

/// The rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Time between two activations.
    pub rotation_period: i64,
    /// How long a next key is published before it signs.
    pub prepublish: i64,
    /// How long a key stays published after it stops signing.
    pub retire_after: i64,
}

/// Why a policy cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `prepublish` is shorter than twice the JWKS max-age: a verifier caching the JWKS for max-age
    /// could miss the next key when it starts signing.
    #[error(
        "keys.prepublish ({prepublish}s) must be at least twice tokens.jwks_max_age ({max_age}s): a verifier that caches the JWKS for max-age would not have the next key when it starts signing"
    )]
    PrepublishTooShort {
        /// The setting.
        prepublish: i64,
        /// JWKS max-age.
        max_age: i64,
    },
    /// `retire_after` is shorter than the longest token lifetime + leeway + JWKS max-age: tokens
    /// signed by a retired key would stop verifying before they expire.
    #[error(
        "keys.retire_after ({retire_after}s) must be at least the longest token lifetime + leeway + JWKS max-age ({needed}s): tokens signed just before a rotation would stop verifying before they expire"
    )]
    RetireTooShort {
        /// The setting.
        retire_after: i64,
        /// The minimum.
        needed: i64,
    },
    /// The rotation period must leave room for prepublishing.
    #[error("keys.rotation_period ({period}s) must be longer than keys.prepublish ({prepublish}s)")]
    PeriodTooShort {
        /// The setting.
        period: i64,
        /// Prepublish.
        prepublish: i64,
    },
}

impl Policy {
    /// Checks that the windows can work for verifiers caching the JWKS for `jwks_max_age` and tokens
    /// living up to `max_token_ttl`, judged with `leeway`.
    pub fn validate(
        &self,
        jwks_max_age: i64,
        max_token_ttl: i64,
        leeway: i64,
    ) -> Result<(), PolicyError> {
        if self.prepublish < 2 * jwks_max_age {
            return Err(PolicyError::PrepublishTooShort {
                prepublish: self.prepublish,
                max_age: jwks_max_age,
            });
        }
        let needed = max_token_ttl + leeway + jwks_max_age;
        if self.retire_after < needed {
            return Err(PolicyError::RetireTooShort {
                retire_after: self.retire_after,
                needed,
            });
        }
        if self.rotation_period <= self.prepublish {
            return Err(PolicyError::PeriodTooShort {
                period: self.rotation_period,
                prepublish: self.prepublish,
            });
        }
        Ok(())
    }
}

/// A key's schedule, as the rotation logic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// Key id.
    pub kid: String,
    /// When it signs from.
    pub activate_at: i64,
    /// When it leaves the JWKS, if scheduled.
    pub remove_at: Option<i64>,
}

/// What rotation should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing is due.
    Idle,
    /// Insert a next key activating at `activate_at`, and schedule the removal of the keys it
    /// supersedes.
    InsertNext {
        /// When the new key signs from.
        activate_at: i64,
        /// `(kid, remove_at)` for the keys that stop signing when it activates and have no removal yet.
        removals: Vec<(String, i64)>,
    },
}

/// The signing key at `now`: the latest `activate_at <= now` (ties: the greater kid).
pub fn current(keys: &[Scheduled], now: i64) -> Option<&Scheduled> {
    keys.iter().filter(|k| k.activate_at <= now).max_by(|a, b| {
        a.activate_at
            .cmp(&b.activate_at)
            .then_with(|| a.kid.cmp(&b.kid))
    })
}

/// Decides the rotation step at `now`. A next key is inserted `prepublish` before the current key's
/// period ends (or at once, activating `prepublish` from now, when that moment was missed).
pub fn step(keys: &[Scheduled], policy: &Policy, now: i64) -> Step {
    if keys.iter().any(|k| k.activate_at > now) {
        return Step::Idle; // a next key is already published
    }
    let Some(cur) = current(keys, now) else {
        return Step::Idle; // no key at all: init's job, never a replica's
    };
    let due = cur.activate_at + policy.rotation_period - policy.prepublish;
    if now < due {
        return Step::Idle;
    }
    let activate_at = (cur.activate_at + policy.rotation_period).max(now + policy.prepublish);
    Step::InsertNext {
        activate_at,
        removals: removals_for(keys, activate_at, policy),
    }
}

/// Removal times for the keys that stop signing once a key activating at `activate_at` takes over.
pub fn removals_for(keys: &[Scheduled], activate_at: i64, policy: &Policy) -> Vec<(String, i64)> {
    keys.iter()
        .filter(|k| k.activate_at < activate_at && k.remove_at.is_none())
        .map(|k| (k.kid.clone(), activate_at + policy.retire_after))
        .collect()
}

/// The timeline ahead, for `castellan keys plan`: `(time, description)`, in order.
pub fn plan(keys: &[Scheduled], policy: &Policy, now: i64) -> Vec<(i64, String)> {
    let mut events: Vec<(i64, String)> = Vec::new();
    for k in keys {
        if k.activate_at > now {
            events.push((k.activate_at, format!("{} starts signing", k.kid)));
        }
        if let Some(r) = k.remove_at.filter(|r| *r > now) {
            events.push((r, format!("{} leaves the JWKS", k.kid)));
        }
    }
    let latest = keys.iter().map(|k| k.activate_at).max();
    if let Some(latest) = latest {
        let insert_at = (latest + policy.rotation_period - policy.prepublish).max(now);
        let activate = (latest + policy.rotation_period).max(insert_at + policy.prepublish);
        events.push((
            insert_at,
            "a new next key is generated and published".to_owned(),
        ));
        events.push((activate, "that key starts signing".to_owned()));
        events.push((
            activate + policy.retire_after,
            "the key it replaces leaves the JWKS".to_owned(),
        ));
    }
    events.sort();
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn policy() -> Policy {
        Policy {
            rotation_period: 30 * DAY,
            prepublish: DAY,
            retire_after: 2 * DAY,
        }
    }

    fn key(kid: &str, activate_at: i64) -> Scheduled {
        Scheduled {
            kid: kid.into(),
            activate_at,
            remove_at: None,
        }
    }

    /// Applies steps like the background job would, for a simulated timeline.
    fn simulate(until: i64, tick: i64, p: &Policy) -> Vec<Scheduled> {
        let mut keys = vec![key("k0", 0)];
        let mut t = 0;
        while t <= until {
            if let Step::InsertNext {
                activate_at,
                removals,
            } = step(&keys, p, t)
            {
                for (kid, at) in removals {
                    if let Some(k) = keys.iter_mut().find(|k| k.kid == kid) {
                        k.remove_at = Some(at);
                    }
                }
                keys.push(key(&format!("k{}", keys.len()), activate_at));
            }
            keys.retain(|k| k.remove_at.is_none_or(|r| r > t));
            t += tick;
        }
        keys
    }

    #[test]
    fn full_cycle_happens_at_the_configured_times() {
        let p = policy();
        let keys = vec![key("a", 0)];
        assert_eq!(step(&keys, &p, 29 * DAY - 1), Step::Idle);
        let Step::InsertNext {
            activate_at,
            removals,
        } = step(&keys, &p, 29 * DAY)
        else {
            panic!("due")
        };
        assert_eq!(activate_at, 30 * DAY);
        assert_eq!(removals, vec![("a".to_owned(), 32 * DAY)]);
        let keys = vec![
            Scheduled {
                kid: "a".into(),
                activate_at: 0,
                remove_at: Some(32 * DAY),
            },
            key("b", 30 * DAY),
        ];
        assert_eq!(
            step(&keys, &p, 29 * DAY + 5),
            Step::Idle,
            "one next key at a time"
        );
        assert_eq!(
            current(&keys, 30 * DAY - 1).map(|k| k.kid.as_str()),
            Some("a")
        );
        assert_eq!(current(&keys, 30 * DAY).map(|k| k.kid.as_str()), Some("b"));
    }

    #[test]
    fn a_missed_window_still_prepublishes() {
        let p = policy();
        // The job did not run for 40 days: the next key must still be published `prepublish` ahead.
        let Step::InsertNext { activate_at, .. } = step(&[key("a", 0)], &p, 40 * DAY) else {
            panic!("due")
        };
        assert_eq!(activate_at, 41 * DAY);
    }

    #[test]
    fn policy_validation_names_the_broken_window() {
        let p = policy();
        assert!(p.validate(300, 86_400, 60).is_ok());
        assert!(matches!(
            Policy {
                prepublish: 500,
                ..p
            }
            .validate(300, 86_400, 60),
            Err(PolicyError::PrepublishTooShort { .. })
        ));
        assert!(matches!(
            Policy {
                retire_after: 3600,
                ..p
            }
            .validate(300, 86_400, 60),
            Err(PolicyError::RetireTooShort { needed: 86_760, .. })
        ));
        assert!(matches!(
            Policy {
                rotation_period: DAY,
                ..p
            }
            .validate(300, 3600, 60),
            Err(PolicyError::PeriodTooShort { .. })
        ));
    }

    /// Property over many policies and tick sizes: whenever a key signs, it has been published at least
    /// `prepublish`; a key stays published at least `retire_after` after it stops signing; there is
    /// never more than one next key.
    #[test]
    fn windows_hold_for_many_policies() {
        let mut seed: u64 = 0x5eed;
        let mut rnd = |lo: i64, hi: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            lo + (seed % ((hi - lo) as u64 + 1)) as i64
        };
        for _ in 0..300 {
            let prepublish = rnd(10, 5_000);
            let p = Policy {
                rotation_period: prepublish + rnd(1, 20_000),
                prepublish,
                retire_after: rnd(1, 30_000),
            };
            let tick = rnd(1, prepublish.max(2) / 2);
            let mut keys = vec![key("k0", 0)];
            let mut published_at = std::collections::HashMap::from([("k0".to_owned(), 0i64)]);
            let mut stopped_at: std::collections::HashMap<String, i64> = Default::default();
            let mut signer = "k0".to_owned();
            let mut t = 0;
            while t < 10 * p.rotation_period {
                if let Step::InsertNext {
                    activate_at,
                    removals,
                } = step(&keys, &p, t)
                {
                    assert!(
                        activate_at - t >= p.prepublish,
                        "prepublished for at least the window"
                    );
                    for (kid, at) in removals {
                        assert!(at >= activate_at + p.retire_after);
                        if let Some(k) = keys.iter_mut().find(|k| k.kid == kid) {
                            k.remove_at = Some(at);
                        }
                    }
                    let kid = format!("k{}", published_at.len());
                    published_at.insert(kid.clone(), t);
                    keys.push(key(&kid, activate_at));
                }
                assert!(keys.iter().filter(|k| k.activate_at > t).count() <= 1);
                let now_signer = current(&keys, t).expect("always a signer").kid.clone();
                if now_signer != signer {
                    assert!(t - published_at[&now_signer] >= p.prepublish);
                    stopped_at.insert(signer.clone(), t);
                    signer = now_signer;
                }
                for k in &keys {
                    if let (Some(r), Some(s)) = (k.remove_at, stopped_at.get(&k.kid)) {
                        assert!(
                            r - s >= p.retire_after - tick,
                            "retired key removed too early"
                        );
                    }
                }
                keys.retain(|k| k.remove_at.is_none_or(|r| r > t));
                t += tick;
            }
        }
    }

    #[test]
    fn simulation_keeps_a_bounded_ring() {
        let keys = simulate(365 * DAY, 3600, &policy());
        assert!(keys.len() <= 3, "{keys:?}");
        assert!(current(&keys, 365 * DAY).is_some());
    }

    #[test]
    fn plan_lists_the_next_events_in_order() {
        let events = plan(&[key("a", 0)], &policy(), DAY);
        let times: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(times, vec![29 * DAY, 30 * DAY, 32 * DAY]);
    }
}
