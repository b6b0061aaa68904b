use super::*;

fn state(active: &str, sub: &str, restarts: u32) -> UnitState {
    UnitState {
        active_state: active.into(),
        sub_state: sub.into(),
        n_restarts: restarts,
    }
}

const POLICY: Policy = Policy {
    timeout: Duration::from_secs(600),
    max_restarts: 5,
};

#[test]
fn parses_systemctl_show() {
    let parsed = parse_show("ActiveState=activating\nSubState=start\nNRestarts=2\n").unwrap();
    assert_eq!(parsed, state("activating", "start", 2));
    assert_eq!(parse_show("ActiveState=active\n").unwrap().n_restarts, 0);
    assert!(parse_show("").is_err());
    assert!(parse_show("ActiveState=\n").is_err());
    assert!(parse_show("ActiveState=active\nNRestarts=many\n").is_err());
}

#[test]
fn judges_one_look() {
    let second = Duration::from_secs(1);
    let active = Ok(state("active", "running", 1));
    assert_eq!(
        judge(&active, second, &POLICY),
        Verdict::Healthy(state("active", "running", 1))
    );
    // Active wins even past the timeout: it made it.
    assert!(matches!(
        judge(&active, POLICY.timeout * 2, &POLICY),
        Verdict::Healthy(_)
    ));
    let starting = Ok(state("activating", "start", 0));
    assert_eq!(judge(&starting, second, &POLICY), Verdict::Wait);
    let looping = state("activating", "auto-restart", 5);
    assert_eq!(
        judge(&Ok(looping.clone()), second, &POLICY),
        Verdict::Unhealthy(Unhealthy::CrashLoop(looping))
    );
    assert_eq!(
        judge(&starting, POLICY.timeout, &POLICY),
        Verdict::Unhealthy(Unhealthy::Timeout(starting.clone()))
    );
    let no_answer = Err("systemctl show failed".to_string());
    assert_eq!(judge(&no_answer, second, &POLICY), Verdict::Wait);
    assert_eq!(
        judge(&no_answer, POLICY.timeout, &POLICY),
        Verdict::Unhealthy(Unhealthy::Timeout(no_answer.clone()))
    );
}

/// Answers from a script, the last one repeated.
struct Script(Vec<Result<UnitState, String>>);

impl UnitProbe for Script {
    fn state(&mut self) -> Result<UnitState, HealthError> {
        let next = if self.0.len() > 1 {
            self.0.remove(0)
        } else {
            self.0[0].clone()
        };
        next.map_err(HealthError::Failed)
    }
}

/// Time that passes only by sleeping.
struct Counted(Duration);

impl Clock for Counted {
    fn elapsed(&self) -> Duration {
        self.0
    }

    fn sleep(&mut self, duration: Duration) {
        self.0 += duration;
    }
}

#[test]
fn waits_until_ready() {
    let mut probe = Script(vec![
        Err("busy".into()),
        Ok(state("activating", "start", 0)),
        Ok(state("activating", "auto-restart", 1)),
        Ok(state("active", "running", 1)),
    ]);
    let waited = wait_healthy(&mut probe, &POLICY, &mut Counted(Duration::ZERO));
    assert_eq!(waited.verdict, Ok(state("active", "running", 1)));
    assert_eq!(waited.waited, Duration::from_secs(3));
}

#[test]
fn gives_up_on_a_crash_loop_or_the_timeout() {
    let mut probe = Script(
        (0..=5)
            .map(|n| Ok(state("activating", "auto-restart", n)))
            .collect(),
    );
    let waited = wait_healthy(&mut probe, &POLICY, &mut Counted(Duration::ZERO));
    assert_eq!(
        waited.verdict,
        Err(Unhealthy::CrashLoop(state("activating", "auto-restart", 5)))
    );
    assert_eq!(waited.waited, Duration::from_secs(5));

    let policy = Policy {
        timeout: Duration::from_secs(30),
        max_restarts: 5,
    };
    let mut probe = Script(vec![Ok(state("inactive", "dead", 0))]);
    let waited = wait_healthy(&mut probe, &policy, &mut Counted(Duration::ZERO));
    assert_eq!(
        waited.verdict,
        Err(Unhealthy::Timeout(Ok(state("inactive", "dead", 0))))
    );
    assert_eq!(waited.waited, Duration::from_secs(30));
}

#[test]
fn blesses_by_removing_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path();
    fs::write(entries.join("horcrux-b+2-1.conf"), "version 3\n").unwrap();
    assert_eq!(
        bless(entries, "horcrux-b+2-1.conf").unwrap(),
        Blessed::Renamed {
            from: "horcrux-b+2-1.conf".into(),
            to: "horcrux-b.conf".into()
        }
    );
    assert_eq!(
        fs::read_to_string(entries.join("horcrux-b.conf")).unwrap(),
        "version 3\n"
    );
    assert!(!entries.join("horcrux-b+2-1.conf").exists());
    // Once more: the file is already renamed.
    assert_eq!(
        bless(entries, "horcrux-b+2-1.conf").unwrap(),
        Blessed::AlreadyGood {
            to: "horcrux-b.conf".into()
        }
    );
    fs::write(entries.join("horcrux-a+0-3.conf"), "").unwrap();
    assert!(matches!(
        bless(entries, "horcrux-a+0-3.conf").unwrap(),
        Blessed::Renamed { to, .. } if to == "horcrux-a.conf"
    ));
    assert_eq!(
        bless(entries, "gone+1-1.conf").unwrap(),
        Blessed::Gone {
            from: "gone+1-1.conf".into()
        }
    );
    assert!(matches!(
        bless(entries, "horcrux-a.conf"),
        Err(BlessError::NoCounter(_))
    ));
}
