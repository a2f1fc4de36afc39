//! The bridge between our Mosquitto-format password and ACL files and the `mqtt5` broker's
//! authentication/authorization hook ([`mqtt5::broker::auth::AuthProvider`]).
//!
//! `mqtt5` calls `authenticate` once per CONNECT and `authorize_publish` /
//! `authorize_subscribe` for every PUBLISH (the will included) and every SUBSCRIBE filter.
//! Refusals map onto what a 3.1.1 client sees from Mosquitto: CONNACK "bad user name or
//! password" (4) or "not authorized" (5), a SUBACK failure (0x80), and for a refused PUBLISH
//! an ordinary PUBACK with the message dropped.
//!
//! A client id belongs to the user connected under it: while a connection with that id is
//! open, a CONNECT with the same id from another user is refused (CONNACK 5) instead of
//! taking the session over, which MQTT would otherwise allow anyone who knows the id. The
//! same user may take its own session over (a reconnect before the old socket is noticed
//! dead). [`SessionOwners`] learns who holds which id from the engine's connect and
//! disconnect events.
//!
//! A password check is deliberately slow (PBKDF2, see `password.rs`), so it runs on the
//! blocking pool, never on the tasks that route messages, and at most [`FileAuth::hashing`]
//! checks run at once: a flood of CONNECTs then queues up behind that limit instead of taking
//! every core from the connections already established.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use mqtt5::broker::auth::{AuthProvider, AuthResult};
use mqtt5::broker::events::{BrokerEventHandler, ClientConnectEvent, ClientDisconnectEvent};
use mqtt5::packet::connect::ConnectPacket;
use mqtt5::protocol::v5::reason_codes::ReasonCode;
use tokio::sync::Semaphore;

use crate::acl::Acl;
use crate::password::PasswordFile;

/// Who may connect and what each may do, from the broker's configuration.
pub(crate) struct FileAuth {
    /// `None`: no password file, so any user name is taken at its word.
    pub passwords: Option<Arc<PasswordFile>>,
    /// Only consulted when there is a password file.
    pub allow_anonymous: bool,
    /// `None`: no ACL file, so everything is allowed.
    pub acl: Option<Arc<Acl>>,
    /// Password checks allowed to run at once.
    pub hashing: Arc<Semaphore>,
    /// Which user holds each connected client id.
    pub owners: SessionOwners,
}

/// Who holds a client id: the user connected under it (`None`: anonymous), and how many of
/// its connections are open (two overlap briefly while one takes the other's session over).
type Holder = (Option<String>, usize);

/// Client id -> its [`Holder`], for the ids connected now.
#[derive(Clone, Default)]
pub(crate) struct SessionOwners(Arc<Mutex<HashMap<String, Holder>>>);

impl SessionOwners {
    /// Whether `client_id` is connected under a user other than `user`.
    fn held_by_another(&self, client_id: &str, user: Option<&str>) -> bool {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(client_id)
            .is_some_and(|(owner, open)| *open > 0 && owner.as_deref() != user)
    }
}

impl BrokerEventHandler for SessionOwners {
    fn on_client_connect<'a>(
        &'a self,
        event: ClientConnectEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(event.client_id.to_string()).or_insert((None, 0));
            entry.0 = event.user_id.as_deref().map(str::to_string);
            entry.1 += 1;
        }
        Box::pin(async {})
    }

    fn on_client_disconnect<'a>(
        &'a self,
        event: ClientDisconnectEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = map.get_mut(&*event.client_id) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    map.remove(&*event.client_id);
                }
            }
        }
        Box::pin(async {})
    }
}

/// How many password checks may run at once: all cores but one, so routing keeps a core.
pub(crate) fn hashing_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

impl FileAuth {
    /// The ACL's verdict on a publish or a subscription; without an ACL file, yes.
    fn acl_allows(&self, judge: impl FnOnce(&Acl) -> bool) -> bool {
        self.acl.as_deref().is_none_or(judge)
    }

    async fn check_connect(&self, connect: &ConnectPacket) -> AuthResult {
        let Some(passwords) = &self.passwords else {
            // Without a password file the user name is still what `%u` ACL patterns use.
            return match &connect.username {
                Some(user) => AuthResult::success_with_user(user.clone()),
                None => AuthResult::success(),
            };
        };
        match (&connect.username, &connect.password) {
            (None, _) if self.allow_anonymous => AuthResult::success(),
            (None, _) => AuthResult::fail(ReasonCode::NotAuthorized),
            (Some(user), password) => {
                // A missing password is refused, but only after the same work as a wrong
                // one, so that timing says nothing about which users exist.
                let given = password.is_some();
                let password = password.clone().unwrap_or_default();
                let ok = match self.hashing.clone().acquire_owned().await {
                    Ok(permit) => {
                        let (file, name) = (passwords.clone(), user.clone());
                        tokio::task::spawn_blocking(move || {
                            let ok = file.verify(&name, &password);
                            drop(permit);
                            ok
                        })
                        .await
                        .unwrap_or(false)
                    }
                    // Closed only when the broker is going away.
                    Err(_) => false,
                };
                if ok && given {
                    return AuthResult::success_with_user(user.clone());
                }
                tracing::info!(
                    user = %user,
                    client_id = %connect.client_id,
                    known_user = passwords.contains(user),
                    "refused a connection: bad user name or password"
                );
                AuthResult::fail(ReasonCode::BadUsernameOrPassword)
            }
        }
    }
}

impl AuthProvider for FileAuth {
    fn authenticate<'a>(
        &'a self,
        connect: &'a ConnectPacket,
        _client_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = mqtt5::Result<AuthResult>> + Send + 'a>> {
        Box::pin(async move {
            let result = self.check_connect(connect).await;
            if result.authenticated
                && self
                    .owners
                    .held_by_another(&connect.client_id, result.user_id.as_deref())
            {
                tracing::warn!(
                    client_id = %connect.client_id,
                    user = ?connect.username,
                    "refused a connection: its client id is connected under another user"
                );
                return Ok(AuthResult::fail(ReasonCode::NotAuthorized));
            }
            Ok(result)
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed = self.acl_allows(|acl| acl.can_publish(user_id, client_id, topic));
        Box::pin(async move { allowed })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic_filter: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed = self.acl_allows(|acl| acl.can_subscribe(user_id, client_id, topic_filter));
        if !allowed {
            tracing::info!(
                client_id = %client_id,
                user = ?user_id,
                filter = %topic_filter,
                "refused a subscription: the ACL grants no read on all of it"
            );
        }
        Box::pin(async move { allowed })
    }
}
