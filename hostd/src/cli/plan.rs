//! `horcrux plan [DIR]`: what hostd would change on this node, as a
//! terraform-like diff. Exit 0: nothing pending; 2: changes pending;
//! 1: error (invalid config, or part of the system could not be observed).

use std::path::Path;

use super::{Outcome, exit, report};
use crate::apply::observe_all;
use crate::backend::Layout;
use crate::daemon::{backends, desired_state};
use crate::plan::render_plan;

pub fn run(dir: &Path) -> Outcome {
    let config = match horcrux_config::load(dir).map(|c| c.into_valid()) {
        Ok(Ok(config)) => config,
        Ok(Err(errors)) => {
            let mut out = Outcome::error(
                exit::INVALID,
                "horcrux plan: the config tree is invalid; nothing would be applied",
            );
            out.stdout = report::render(&errors);
            return out;
        }
        Err(e) => return Outcome::error(exit::INVALID, &format!("horcrux plan: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome::error(exit::INVALID, &format!("horcrux plan: cannot start: {e}"));
        }
    };
    let backends = backends(&Layout::default(), true, None);
    let desired = desired_state(&backends, &config);
    let plan = runtime.block_on(async { observe_all(&backends).await.plan(&desired) });
    let code = u8::try_from(plan.exit_code()).unwrap_or(exit::INVALID);
    Outcome {
        stdout: render_plan(&plan),
        stderr: String::new(),
        code,
    }
}
