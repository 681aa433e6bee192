//! The signal bells (see `crate::signal`): once `unregister` returns, no signal handler
//! rings the bell's fd (the loop closes it next, and the number may then name another
//! file).

use super::model;
use crate::signal::Bells;
use crate::sync::Life;
use loom::sync::Arc;
use loom::thread;

/// A handler runs (on another thread, as a signal may be delivered to any) while a loop
/// unregisters its bell and then closes it.
#[test]
fn loom_signal_bells() {
    model(|| {
        let bells = Arc::new(Bells::<2>::new());
        let fd = 7;
        let slot = bells.register(fd).expect("a free slot");
        let bell = Arc::new(Life::default());
        let handler = {
            let (bells, bell) = (bells.clone(), bell.clone());
            thread::spawn(move || {
                bells.ring_all(|rung| {
                    assert_eq!(rung, fd);
                    bell.touch();
                })
            })
        };
        bells.unregister(slot);
        bell.end(); // the loop closes its bell
        handler.join().unwrap();
    });
}
