//! The root context of one worker VM: loads the configuration, and in full-impersonation mode
//! keeps the shared token fresh from its tick and wakes this worker's waiting requests.

use std::rc::Rc;

use log::{error, info, warn};

use crate::config::{FilterConfig, TokenSourceConfig, TokenSourceKind};
use crate::host;
use crate::identity_tokens::{FetchContext, IdentityFetch, IdentityFetcher, IdentityTokens};
use crate::local_token::{self, Waiter};
use crate::rbac_gate::RbacGate;
use crate::vm_state::{TokenRuntime, VmState};
use crate::metrics::Metrics;
use crate::random::Rng;
use crate::rbac_runtime::RbacChecker;
use crate::refusal::{Reason, Refusal};
use crate::reply;
use crate::token::callout::{self, Answer, FetchInFlight};
use crate::token::request::{self, Credentials};
use crate::token::response::{self, FetchError, FetchFailure};
use crate::token::state::{SharedState, Timing};

/// While a request waits, no token is usable, or the token nears the end of its use, poll the
/// shared token this often.
const FAST_TICK_MS: u32 = 20;
/// Otherwise, look at the shared token this often to refresh it on time; also how often the
/// batched request counters reach Envoy's stats.
const SLOW_TICK_MS: u32 = 200;
/// Tick fast once the token's use ends within this many milliseconds, so it is retired
/// [`FAST_TICK_MS`] before its end rather than up to [`SLOW_TICK_MS`] before it.
const NEAR_END_OF_USE_MS: u64 = 2 * SLOW_TICK_MS as u64;
/// How late a tick may run and still retire a token before its end of use: a token is kept only
/// while it stays usable for the time to the next tick plus this slack.
const TICK_SLACK_MS: u32 = FAST_TICK_MS;
const CAS_ATTEMPTS: usize = 16;

pub struct Root {
    context_id: u32,
    rng: Rng,
    worker_id: u64,
    state: Option<Rc<VmState>>,
    credentials: Credentials,
    /// The token fetch in flight: its call id (an answer is taken as the token only when it
    /// carries this id) and when it started.
    fetch: Option<FetchInFlight>,
    tick_ms: u32,
    metrics: Rc<Metrics>,
    rbac: RbacChecker,
    identity_fetcher: IdentityFetcher,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        let mut rng = Rng::from_entropy();
        let worker_id = rng.next_nonzero();
        Root {
            context_id,
            rng,
            worker_id,
            state: None,
            credentials: Credentials::default(),
            fetch: None,
            tick_ms: 0,
            metrics: Rc::new(Metrics::default()),
            rbac: RbacChecker::default(),
            identity_fetcher: IdentityFetcher::default(),
        }
    }

    fn timing(source: &TokenSourceConfig) -> Timing {
        Timing {
            timeout_ms: source.timeout.as_millis() as u64,
            retry_initial_ms: source.retry_initial.as_millis() as u64,
            retry_max_ms: source.retry_max.as_millis() as u64,
        }
    }

    fn set_tick(&mut self, period_ms: u32) {
        if self.tick_ms != period_ms {
            self.tick_ms = period_ms;
            host::set_tick_period_ms(period_ms);
        }
    }

    /// Reads the shared state; creates it (empty) on first use. `None` when just created: the
    /// next tick decides, which keeps two workers that start together from both fetching.
    fn read_shared(key: &str) -> Option<(SharedState, u32)> {
        match host::get_shared_data(key) {
            Ok(Some((bytes, cas))) => Some((SharedState::decode(&bytes), cas)),
            Ok(None) => {
                // Created only if still missing: another worker may have just stored a lease.
                let _ = host::set_shared_data(key, &SharedState::default().encode(), host::CREATE_ONLY);
                None
            }
            Err(status) => {
                error!("cannot read the shared token (host status {status})");
                None
            }
        }
    }

    fn maybe_start_fetch(&mut self, state: &VmState, now_ms: u64) {
        let (Some(source), Some(runtime)) = (&state.config.token_source, &state.token) else {
            return;
        };
        if self.fetch.is_some() {
            return;
        }
        let Some((shared, cas)) = Self::read_shared(&runtime.key) else {
            return;
        };
        runtime.adopt(&shared, now_ms);
        let timing = Self::timing(source);
        let Some(leased) = shared.try_lease(now_ms, self.worker_id, &timing) else {
            return;
        };
        match host::set_shared_data(&runtime.key, &leased.encode(), cas) {
            Ok(host::SetShared::Stored) => {}
            Ok(host::SetShared::CasMismatch) => return,
            Err(status) => {
                error!("cannot write the shared token (host status {status})");
                return;
            }
        }
        match send_token_request(source, &self.credentials) {
            Ok(call_id) => {
                self.fetch = Some(FetchInFlight { call_id, started_ms: now_ms });
            }
            Err(error) => self.finish_fetch(state, Err(error), now_ms, None),
        }
    }

    fn finish_fetch(
        &mut self,
        state: &VmState,
        result: Result<crate::token::FetchedToken, FetchError>,
        now_ms: u64,
        latency_ms: Option<u64>,
    ) {
        let (Some(source), Some(runtime)) = (&state.config.token_source, &state.token) else {
            return;
        };
        let timing = Self::timing(source);
        let jitter = self.rng.next_unit();
        let mut stored = None;
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas) = match host::get_shared_data(&runtime.key) {
                Ok(Some((bytes, cas))) => (SharedState::decode(&bytes), cas),
                Ok(None) => (SharedState::default(), host::CREATE_ONLY),
                Err(_) => break,
            };
            let next = match &result {
                Ok(fetched) => current.with_token(fetched, now_ms, self.worker_id, jitter),
                Err(_) => current.with_failure(now_ms, self.worker_id, &timing, jitter),
            };
            if let Ok(host::SetShared::Stored) =
                host::set_shared_data(&runtime.key, &next.encode(), cas)
            {
                stored = Some(next);
                break;
            }
        }
        match &stored {
            Some(next) => {
                if result.is_ok() {
                    runtime.adopt(next, now_ms);
                }
                self.report_fetch(state, "", &result, next, now_ms, latency_ms);
            }
            None => {
                error!("could not record the token fetch result in shared data; the lease will run out and another attempt follows");
            }
        }
    }

    /// Counts and logs a fetch whose result is stored as `next`; when it is a token this worker
    /// stored (not an older answer that lost to a fresher one), this worker asks what it may do
    /// (the RBAC self-check, once per generation). `subject` says whose token it is in the logs.
    fn report_fetch(
        &mut self,
        state: &VmState,
        subject: &str,
        result: &Result<crate::token::FetchedToken, FetchError>,
        next: &SharedState,
        now_ms: u64,
        latency_ms: Option<u64>,
    ) {
        let Some(source) = &state.config.token_source else {
            return;
        };
        match result {
            Ok(fetched) => {
                self.metrics.fetch_succeeded(latency_ms.unwrap_or(0));
                info!(
                    "token{subject} fetched from {} (expires in {} s, expiry from {:?}, generation {})",
                    source.type_name(),
                    fetched.expires_at_ms.saturating_sub(now_ms) / 1000,
                    fetched.expiry_source,
                    next.generation
                );
                if next.token.as_deref() == Some(fetched.token.as_str()) {
                    let authorization = format!("Bearer {}", fetched.token);
                    self.rbac.start(state, next.generation, &authorization, now_ms);
                }
            }
            Err(error) => {
                self.metrics.fetch_failed(error.failure, latency_ms);
                warn!(
                    "token fetch{subject} from {} failed ({}): {}; attempt {}, next try in {} ms{}",
                    source.type_name(),
                    error.failure.as_str(),
                    error.detail,
                    next.consecutive_failures,
                    next.retry_at_ms.saturating_sub(now_ms),
                    if next.usable_token(now_ms).is_some() {
                        ", the current token stays in use until it nears expiry"
                    } else {
                        ", requests get 503 token_unavailable until a token arrives"
                    }
                );
            }
        }
    }

    /// Resumes this worker's waiting requests when a token is usable, and answers 503 to those
    /// that waited `max_request_wait_ms`.
    fn serve_waiters(&self, state: &VmState, now_ms: u64) {
        if let Some(tokens) = &state.identity_tokens {
            for (waiters, authorization) in tokens.take_waiters(now_ms) {
                self.release(waiters, authorization.as_deref());
            }
            return;
        }
        let Some(runtime) = &state.token else {
            return;
        };
        if runtime.waiters.borrow().is_empty() {
            return;
        }
        let authorization = runtime.authorization(now_ms);
        let waiters = local_token::take_due(&mut runtime.waiters.borrow_mut(), authorization.is_some(), now_ms);
        self.release(waiters, authorization.as_deref());
    }

    /// Resumes `waiters` with `authorization`, or refuses them with 503 when there is none.
    fn release(&self, waiters: Vec<Waiter>, authorization: Option<&str>) {
        if waiters.is_empty() {
            return;
        }
        for waiter in waiters {
            // The request may have been reset by its client since it paused.
            if host::set_effective_context(waiter.context_id).is_err() {
                self.metrics.left_queue(false);
                continue;
            }
            match authorization {
                Some(value) => {
                    let applied = host::replace_header(
                        host::REQUEST_HEADERS,
                        b"authorization",
                        value.as_bytes(),
                    );
                    if applied.is_ok() && host::resume_request().is_ok() {
                        self.metrics.left_queue(true);
                        self.metrics.forwarded();
                    } else {
                        self.metrics.left_queue(false);
                    }
                }
                None => {
                    self.metrics.left_queue(false);
                    reply::refuse(
                        &self.metrics,
                        &Refusal::new(
                            Reason::TokenUnavailable,
                            "no valid ServiceAccount token is available yet; retry shortly",
                        ),
                    );
                }
            }
        }
        let _ = host::set_effective_context(self.context_id);
    }

    /// `per_identity`: the tick's work on the tokens per identity, in place of the shared
    /// token's.
    fn tick_identities(&mut self, state: &VmState, tokens: &IdentityTokens, now_ms: u64) {
        let Some(source) = &state.config.token_source else {
            return;
        };
        let timing = Self::timing(source);
        self.identity_fetcher
            .forget_lost(now_ms, source.timeout.as_millis() as u64);
        let credentials = &self.credentials;
        let mut dispatch = || send_token_request(source, credentials);
        let mut ctx = FetchContext {
            now_ms,
            me: self.worker_id,
            timing,
            metrics: &self.metrics,
            dispatch: &mut dispatch,
        };
        let failed = self.identity_fetcher.on_tick(tokens, &mut ctx);
        for (fetch, error) in failed {
            self.finish_identity_fetch(state, tokens, &fetch, Err(error), now_ms, None);
        }
        self.serve_waiters(state, now_ms);
        for _ in 0..tokens.drop_gone_waiters(self.context_id) {
            self.metrics.left_queue(false);
        }
        // The RBAC self-check's tick looks for a usable token in `token.local`.
        if let Some(runtime) = &state.token {
            *runtime.local.borrow_mut() = tokens.newest(now_ms);
        }
    }

    fn finish_identity_fetch(
        &mut self,
        state: &VmState,
        tokens: &IdentityTokens,
        fetch: &IdentityFetch,
        result: Result<crate::token::FetchedToken, FetchError>,
        now_ms: u64,
        latency_ms: Option<u64>,
    ) {
        let Some(source) = &state.config.token_source else {
            return;
        };
        let timing = Self::timing(source);
        let jitter = self.rng.next_unit();
        let stored =
            IdentityFetcher::finish(tokens, fetch, &result, now_ms, self.worker_id, &timing, jitter);
        match (&stored, &result) {
            (Some(next), _) => {
                let subject = format!(" for identity slot {}", fetch.slot);
                self.report_fetch(state, &subject, &result, &next.token, now_ms, latency_ms);
            }
            // Not stored: the slot went to another identity meanwhile (`finish` logs that), or
            // shared data refused the write (the lease runs out and another attempt follows).
            (None, Ok(_)) => self.metrics.fetch_succeeded(latency_ms.unwrap_or(0)),
            (None, Err(error)) => self.metrics.fetch_failed(error.failure, latency_ms),
        }
    }
}

/// The entry points `abi` calls.
impl Root {
    pub fn on_http_call_response(&mut self, call_id: u32, num_headers: usize, body_size: usize) {
        let now_ms = host::now_ms();
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(source) = &state.config.token_source else {
            return;
        };
        if let Some(fetch) = self.identity_fetcher.take(call_id) {
            let Some(tokens) = &state.identity_tokens else {
                return;
            };
            let (status, body) = read_call_answer(num_headers, body_size);
            let result = response::parse(&source.kind, status, &body, now_ms);
            let latency = now_ms.saturating_sub(fetch.started_ms);
            self.finish_identity_fetch(&state, tokens, &fetch, result, now_ms, Some(latency));
            self.serve_waiters(&state, now_ms);
            return;
        }
        let answer = callout::classify(call_id, self.fetch, self.rbac.owns(call_id));
        let (rbac_review, started) = match answer {
            Answer::RbacReview => (true, None),
            Answer::TokenFetch { started_ms } => {
                self.fetch = None;
                (false, Some(started_ms))
            }
            Answer::Stray => {
                // An answer to a fetch that timed out on our side, or to a call made before a
                // reconfiguration: not trusted to be the token asked for. The lease it held
                // runs out and a new fetch follows.
                warn!("ignoring the answer to HTTP call {call_id}: no token fetch of this configuration is waiting for it");
                return;
            }
        };
        let (status, body) = read_call_answer(num_headers, body_size);
        if rbac_review {
            self.rbac.on_response(&state, call_id, status, &body, now_ms);
            return;
        }
        let result = response::parse(&source.kind, status, &body, now_ms);
        let latency = started.map(|start| now_ms.saturating_sub(start));
        self.finish_fetch(&state, result, now_ms, latency);
        self.serve_waiters(&state, now_ms);
    }

    pub fn on_configure(&mut self) -> bool {
        if self.state.is_none() {
            self.metrics = Rc::new(Metrics::define());
        }
        let bytes = match host::get_buffer(host::BUFFER_PLUGIN_CONFIGURATION, usize::MAX) {
            Ok(bytes) => bytes,
            Err(status) => {
                error!("cannot read the plugin configuration (host status {status})");
                self.metrics.config_rejected();
                return false;
            }
        };
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(error) => {
                error!("{error}; the filter refuses to start");
                self.metrics.config_rejected();
                return false;
            }
        };
        let credentials = match read_credentials(&config) {
            Ok(credentials) => credentials,
            Err(message) => {
                error!("invalid plugin configuration: {message}; the filter refuses to start");
                self.metrics.config_rejected();
                return false;
            }
        };
        let token = config
            .token_source
            .as_ref()
            .map(|source| TokenRuntime::new(source.cache_key(), u64::from(FAST_TICK_MS + TICK_SLACK_MS)));
        info!(
            "kiali-header-auth {} configured: mode {:?}{}",
            env!("CARGO_PKG_VERSION"),
            config.mode(),
            config
                .token_source
                .as_ref()
                .map(|s| format!(", token source {} via cluster {:?}", s.type_name(), s.cluster))
                .unwrap_or_default()
        );
        let identity_tokens = config.token_source.as_ref().and_then(|source| {
            source
                .per_identity
                .map(|per| IdentityTokens::new(source.cache_key(), per.max_identities, &config))
        });
        let has_token = token.is_some();
        self.credentials = credentials;
        self.state = Some(Rc::new(VmState {
            config,
            metrics: self.metrics.clone(),
            token,
            identity_tokens,
            rbac_gate: RbacGate::default(),
        }));
        self.rbac = RbacChecker::default();
        self.identity_fetcher = IdentityFetcher::default();
        // An answer to a fetch of the previous configuration is ignored (see on_http_call_response).
        self.fetch = None;
        self.tick_ms = 0;
        self.set_tick(if has_token { FAST_TICK_MS } else { SLOW_TICK_MS });
        true
    }

    pub fn on_tick(&mut self) {
        self.metrics.flush();
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(runtime) = &state.token else {
            return;
        };
        let now_ms = host::now_ms();
        if let Some(tokens) = &state.identity_tokens {
            self.tick_identities(&state, tokens, now_ms);
            self.rbac.on_tick(&state, now_ms);
            let fast = tokens.needs_fast_tick(now_ms, NEAR_END_OF_USE_MS);
            let period = if fast { FAST_TICK_MS } else { SLOW_TICK_MS };
            self.set_tick(period);
            tokens.refresh_usable(now_ms, u64::from(period + TICK_SLACK_MS));
            return;
        }
        // A fetch whose answer never came (the VM lost it) must not block forever.
        if let (Some(source), Some(fetch)) = (&state.config.token_source, &self.fetch) {
            if now_ms > fetch.started_ms + source.timeout.as_millis() as u64 + 5_000 {
                self.fetch = None;
            }
        }
        self.maybe_start_fetch(&state, now_ms);
        self.rbac.on_tick(&state, now_ms);
        self.serve_waiters(&state, now_ms);
        self.drop_gone_waiters(runtime);
        let usable_until_ms = runtime.local.borrow().as_ref().map(|local| local.usable_until_ms);
        if let Some(until) = usable_until_ms {
            self.metrics
                .token_seconds_to_expiry(until.saturating_sub(now_ms) / 1000);
        }
        // Slow ticks only while a token stays usable well past the next slow tick and no
        // request waits; then retire the token one tick period ahead of its end of use.
        let idle = usable_until_ms
            .is_some_and(|until| now_ms + NEAR_END_OF_USE_MS < until)
            && runtime.waiters.borrow().is_empty();
        let period = if idle { SLOW_TICK_MS } else { FAST_TICK_MS };
        self.set_tick(period);
        runtime.retire_ahead_ms.set(u64::from(period + TICK_SLACK_MS));
        runtime.refresh_usable(now_ms);
    }

    /// Forgets waiting requests whose stream is gone (reset by the client): Envoy no longer
    /// knows their context. There is no per-stream delete callback to do it (see `abi`).
    fn drop_gone_waiters(&self, runtime: &TokenRuntime) {
        if runtime.waiters.borrow().is_empty() {
            return;
        }
        let gone = local_token::drop_gone(&mut runtime.waiters.borrow_mut());
        let _ = host::set_effective_context(self.context_id);
        for _ in 0..gone {
            self.metrics.left_queue(false);
        }
    }

    /// This root's configuration and token, once configured: what its streams run under.
    pub fn vm_state(&self) -> Option<Rc<VmState>> {
        self.state.clone()
    }
}

/// The `:status` and body (up to 1 MiB) of the HTTP call answer being delivered.
fn read_call_answer(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = if num_headers == 0 {
        None
    } else {
        host::get_header_map(host::CALL_RESPONSE_HEADERS)
            .ok()
            .and_then(|map| {
                map.pairs()
                    .into_iter()
                    .find(|(name, _)| *name == b":status")
                    .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u16>().ok())
            })
    };
    let body = if body_size > 0 {
        host::get_buffer(host::BUFFER_CALL_RESPONSE_BODY, body_size.min(1 << 20)).unwrap_or_default()
    } else {
        Vec::new()
    };
    (status, body)
}

/// Sends one token request; the call id its answer will carry.
fn send_token_request(source: &TokenSourceConfig, credentials: &Credentials) -> Result<u32, FetchError> {
    let callout = request::build(source, credentials);
    let headers: Vec<(&[u8], &[u8])> = callout
        .headers
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
        .collect();
    let timeout_ms = u32::try_from(source.timeout.as_millis()).unwrap_or(u32::MAX);
    host::dispatch_http_call(&callout.cluster, &headers, &callout.body, timeout_ms).map_err(|status| {
        FetchError::new(
            FetchFailure::Dispatch,
            format!(
                "cannot send the token request to cluster {:?} (host status {status:?}); \
                 check that the cluster exists in this Envoy and that `token_source.authority` is set",
                callout.cluster
            ),
        )
    })
}

fn read_credentials(config: &FilterConfig) -> Result<Credentials, String> {
    let mut credentials = Credentials::default();
    let Some(source) = &config.token_source else {
        return Ok(credentials);
    };
    let read = |field: &str, name: &str| -> Result<String, String> {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
            _ => Err(format!(
                "field `{field}`: environment variable {name} is not set in the Wasm VM; pass it \
                 with vm_config.environment_variables (Envoy) or vmConfig.env (Istio)"
            )),
        }
    };
    match &source.kind {
        TokenSourceKind::KubernetesTokenRequest {
            credential_env: Some(name),
            ..
        } => credentials.bearer = Some(read("token_source.credential_env", name)?),
        TokenSourceKind::KubernetesTokenRequest { .. } => {}
        TokenSourceKind::OAuth2ClientCredentials {
            client_secret_env, ..
        } => {
            credentials.client_secret =
                Some(read("token_source.client_secret_env", client_secret_env)?)
        }
    }
    Ok(credentials)
}
