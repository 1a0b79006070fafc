//! `withlock release NAME...`: ends this user's holds of the locks
//! (`withlock hold`); root ends anyone's. The protocol, and why another
//! user can neither end a hold nor pass for one, is the library's
//! ([`withlock::hold`]).

use withlock::hold::Release;

use crate::cli::Cli;
use crate::exit_code;
use crate::lock_request;

/// Releases the holds of the locks `cli` names: 0 once they are free,
/// [`exit_code::PERMISSION`] if only other users' holds were found,
/// [`exit_code::USAGE`] if there is no hold to release.
pub(crate) fn run(cli: &Cli) -> anyhow::Result<u8> {
    let set = lock_request::lock_set(cli)?;
    let names = lock_request::names(&set);
    match withlock::hold::release(&set) {
        Release::Released(holds) => {
            if cli.verbose {
                for hold in holds {
                    say!("withlock: released {names}, held by {}", hold.brief());
                }
            }
            Ok(0)
        }
        Release::NotYours(holds) => {
            let owners: Vec<String> = holds.iter().map(|h| h.brief()).collect();
            say!(
                "withlock: the hold of {names} is another user's ({}): only that user or root \
                 can release it",
                owners.join(", ")
            );
            Ok(exit_code::PERMISSION)
        }
        _ => {
            say!(
                "withlock: no withlock hold of {names} on this machine to release \
                 (withlock --list shows who holds it)"
            );
            Ok(exit_code::USAGE)
        }
    }
}
