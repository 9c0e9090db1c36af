//! One cancellation token for the whole process, cancelled on SIGTERM or
//! SIGINT.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => {
                    tracing::error!(error = %error, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = interrupt => tracing::info!("sigint received, shutting down"),
                _ = terminate.recv() => tracing::info!("sigterm received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
        token.cancel();
    });
}
