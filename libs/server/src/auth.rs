//! Authentication and authorization of incoming calls: the token settings every service
//! shares, and the tower layer that checks each call before its handler runs.
//!
//! The layer wraps each Docket gRPC service, not health or reflection. It verifies the
//! `authorization: Bearer <jwt>` header with [`Verifier`], checks the method path against
//! the permission table with [`authorize_path`], and stores the [`Principal`] in the
//! request extensions, where [`crate::Caller::from_request`] reads it.

use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::Args;
use docket_auth::{AuthError, ConfigError, Denied, KeySource, Principal, Verifier, VerifierConfig, authorize_path};
use futures::future::BoxFuture;
use tonic::metadata::MetadataMap;
use tower::{Layer, Service};

use crate::settings::duration_between;

/// Token verification settings shared by the ticket, audit and metrics services.
#[derive(Clone, Debug, Args)]
pub struct AuthSettings {
    /// Issuer that every token's `iss` claim must equal.
    #[arg(long, env = "DOCKET_JWT_ISSUER", default_value = "docket", value_parser = non_empty)]
    pub jwt_issuer: String,

    /// Audience that every token's `aud` claim must include.
    #[arg(long, env = "DOCKET_JWT_AUDIENCE", default_value = "docket", value_parser = non_empty)]
    pub jwt_audience: String,

    /// Directory of PEM public keys (SPKI) that verify tokens. Each `*.pem` file is one key,
    /// and its file stem is the key id (`kid`).
    #[arg(long, env = "DOCKET_JWT_KEYS_DIR", value_name = "DIR")]
    pub jwt_keys_dir: Option<PathBuf>,

    /// JWKS document (RFC 7517) of public keys that verify tokens. Every key needs a `kid`.
    #[arg(long, env = "DOCKET_JWT_JWKS_FILE", value_name = "FILE")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// Clock skew tolerated on the `exp` and `nbf` claims, from 0s to 60s.
    #[arg(long, env = "DOCKET_JWT_LEEWAY", value_name = "DURATION", default_value = "30s",
        value_parser = duration_between(Duration::ZERO, docket_auth::MAX_LEEWAY))]
    pub jwt_leeway: Duration,

    /// Development only: a file whose content (at least 32 bytes) is a shared secret that
    /// also admits HS256 tokens. Anyone holding it can mint a token for any role.
    #[arg(long, env = "DOCKET_JWT_DEV_HS256_SECRET_FILE", value_name = "FILE")]
    pub jwt_dev_hs256_secret_file: Option<PathBuf>,
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the value is empty; write a name such as docket".to_owned());
    }
    Ok(text.to_owned())
}

/// Reasons the token settings cannot produce a verifier. Each one stops the service at start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "no token verification key is configured: set --jwt-keys-dir (DOCKET_JWT_KEYS_DIR) or --jwt-jwks-file (DOCKET_JWT_JWKS_FILE), or for development only --jwt-dev-hs256-secret-file"
    )]
    NoKeySource,

    #[error("cannot read the development secret file {path}: {source}")]
    DevSecret { path: PathBuf, source: std::io::Error },

    #[error("invalid token verification settings: {0}")]
    Verifier(#[from] ConfigError),
}

impl AuthSettings {
    /// Reads the configured keys and builds the verifier. A development secret is logged as
    /// a warning, because it lets its holder mint any token.
    pub fn verifier(&self) -> Result<Arc<Verifier>, AuthConfigError> {
        let mut keys = Vec::new();
        if let Some(directory) = &self.jwt_keys_dir {
            keys.push(KeySource::PemDirectory(directory.clone()));
        }
        if let Some(path) = &self.jwt_jwks_file {
            keys.push(KeySource::JwksFile(path.clone()));
        }
        let dev_hs256_secret = match &self.jwt_dev_hs256_secret_file {
            None => None,
            Some(path) => {
                let secret = std::fs::read(path).map_err(|source| AuthConfigError::DevSecret { path: path.clone(), source })?;
                tracing::warn!(path = %path.display(), "development HS256 secret configured: anyone holding it can mint tokens for any role; never set it in production");
                Some(secret)
            }
        };
        if keys.is_empty() && dev_hs256_secret.is_none() {
            return Err(AuthConfigError::NoKeySource);
        }

        let verifier = Verifier::new(VerifierConfig {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: self.jwt_leeway,
            keys,
            dev_hs256_secret,
        })?;
        tracing::info!(key_ids = %verifier.key_ids().join(","), "token verification keys loaded");
        Ok(Arc::new(verifier))
    }

    /// Builds the verifier, or prints the reason and exits with [`crate::EXIT_CONFIG`], for
    /// `main.rs` before the service starts.
    pub fn verifier_or_exit(&self) -> Arc<Verifier> {
        self.verifier().unwrap_or_else(|error| {
            eprintln!("error: {error}");
            std::process::exit(crate::EXIT_CONFIG);
        })
    }
}

/// Reloads the verification keys from their files on every SIGHUP, so keys rotate without a
/// restart. A reload that fails keeps the keys in use and logs the error.
pub fn reload_on_sighup(verifier: Arc<Verifier>) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hangups = signal(SignalKind::hangup()).expect("installing a SIGHUP handler succeeds on Unix");
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match verifier.reload() {
                Ok(count) => tracing::info!(keys = count, key_ids = %verifier.key_ids().join(","), "reloaded verification keys"),
                Err(error) => tracing::error!(%error, "reloading verification keys failed, keeping the current keys"),
            }
        }
    })
}

/// Receives the calls that the layer denied to an authenticated principal, so a service can
/// keep an audit record of each attempt. Unauthenticated calls are not passed on.
pub trait DenialRecorder: Send + Sync + 'static {
    /// Records one denied call to the method `path`. Failures are the recorder's to log,
    /// because the caller gets PERMISSION_DENIED either way.
    fn record<'a>(&'a self, principal: &'a Principal, path: &'a str, denied: &'a Denied) -> BoxFuture<'a, ()>;
}

/// Builds [`Authenticated`] services that share one verifier.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
    recorder: Option<Arc<dyn DenialRecorder>>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier, recorder: None }
    }

    /// Passes every denied call of an authenticated principal to `recorder`.
    pub fn on_denied(mut self, recorder: Arc<dyn DenialRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Wraps one gRPC service, keeping its name for the router.
    pub fn wrap<S>(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            verifier: self.verifier.clone(),
            recorder: self.recorder.clone(),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.wrap(inner)
    }
}

/// A gRPC service whose calls run only for an authenticated and authorized principal.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Arc<Verifier>,
    recorder: Option<Arc<dyn DenialRecorder>>,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

/// Outcome of the checks that run before the handler.
enum Rejection {
    Unauthenticated(AuthError),
    /// Boxed because a principal and a denial are large next to the success value.
    Denied(Box<(Principal, Denied)>),
}

impl<S> Authenticated<S> {
    fn check(&self, headers: &http::HeaderMap, path: &str) -> Result<Principal, Rejection> {
        // MetadataMap is tonic's view of the same headers; the verifier reads only
        // `authorization` from it.
        let metadata = MetadataMap::from_headers(headers.clone());
        let principal = self.verifier.authenticate(&metadata).map_err(Rejection::Unauthenticated)?;
        match authorize_path(&principal, path) {
            Ok(_) => Ok(principal),
            Err(denied) => Err(Rejection::Denied(Box::new((principal, denied)))),
        }
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        match self.check(request.headers(), &path) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Box::pin(self.inner.call(request))
            }
            Err(Rejection::Unauthenticated(error)) => {
                // The message names only constants, never token content.
                tracing::info!(rpc = %path, %error, "rejected unauthenticated call");
                let status = tonic::Status::from(error);
                Box::pin(async move { Ok(status.into_http()) })
            }
            Err(Rejection::Denied(rejection)) => {
                let (principal, denied) = *rejection;
                tracing::warn!(rpc = %path, subject = %principal.subject, roles = %principal.role_names(), "denied call");
                let recorder = self.recorder.clone();
                Box::pin(async move {
                    if let Some(recorder) = recorder {
                        recorder.record(&principal, &path, &denied).await;
                    }
                    Ok(tonic::Status::from(denied).into_http())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestSettings {
        #[command(flatten)]
        auth: AuthSettings,
    }

    #[tokio::test]
    async fn sighup_reloads_keys_from_the_directory() {
        let directory = std::env::temp_dir().join(format!("docket-auth-reload-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("create the key directory");
        let first = docket_auth::generate_ed25519_keypair().expect("generate a key pair");
        std::fs::write(directory.join("first.pem"), first.public_pem).expect("write the public key");
        let settings = TestSettings::try_parse_from(["docket-test", "--jwt-keys-dir", directory.to_str().unwrap()])
            .expect("settings parse")
            .auth;
        let verifier = settings.verifier().expect("the verifier loads the directory");
        let task = reload_on_sighup(verifier.clone());

        let second = docket_auth::generate_ed25519_keypair().expect("generate a key pair");
        std::fs::write(directory.join("second.pem"), second.public_pem).expect("write the public key");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());

        let mut reloaded = false;
        for _ in 0..100 {
            if verifier.key_ids().iter().any(|kid| kid == "second") {
                reloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let _ = std::fs::remove_dir_all(&directory);
        assert!(reloaded, "key ids after SIGHUP: {:?}", verifier.key_ids());
    }

    #[test]
    fn settings_without_key_source_are_rejected() {
        let settings = TestSettings::try_parse_from(["docket-test"]).expect("defaults parse").auth;
        let error = settings.verifier().expect_err("no key source");
        assert!(matches!(error, AuthConfigError::NoKeySource), "{error}");
        assert!(error.to_string().contains("--jwt-keys-dir"), "{error}");
    }

    #[test]
    fn leeway_above_one_minute_is_rejected() {
        let error = TestSettings::try_parse_from(["docket-test", "--jwt-leeway", "61s"]).expect_err("61s is over the maximum");
        assert_eq!(crate::settings::exit_code(&error), crate::EXIT_CONFIG);
    }

    #[test]
    fn empty_issuer_is_rejected() {
        let error = TestSettings::try_parse_from(["docket-test", "--jwt-issuer", " "]).expect_err("an empty issuer");
        assert_eq!(crate::settings::exit_code(&error), crate::EXIT_CONFIG);
    }

    #[test]
    fn keys_directory_loads_each_public_key() {
        let directory = std::env::temp_dir().join(format!("docket-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("create the key directory");
        let pair = docket_auth::generate_ed25519_keypair().expect("generate a key pair");
        std::fs::write(directory.join("dev-user.pem"), pair.public_pem).expect("write the public key");

        let keys_dir = directory.display().to_string();
        let settings = TestSettings::try_parse_from(["docket-test", "--jwt-keys-dir", &keys_dir]).expect("settings parse").auth;
        let verifier = settings.verifier().expect("the verifier builds");
        std::fs::remove_dir_all(&directory).expect("remove the key directory");

        assert_eq!(verifier.key_ids(), vec!["dev-user".to_owned()]);
    }
}
