//! The servers' MQTT 5 connection, for the JSON API only: MQTT 5 clients name where the
//! answer goes in the standard way, with the publish's *response topic* and *correlation
//! data* properties (`mosquitto_rr`, paho's `properties`), and an MQTT 3.1.1 connection
//! never sees those properties. So each server also keeps this second connection, as the
//! same user, subscribed to the JSON request topics alone and answering on it with the
//! request's correlation data. The rest of a server's traffic stays on its 3.1.1 connection
//! ([`crate::transport`]), which does not subscribe to JSON requests, so none arrives twice.
//!
//! Same settings as the main connection where they matter: TCP_NODELAY, TLS with the same
//! roots, the packet size limit, reconnection with backoff, and a byte budget on what is
//! received but not yet handled.

use crate::transport::{
    network_options, parse_url, tls_config, BrokerOptions, ConnectionEvents, ConnectionTask, Held,
    LoopEvent, MAX_PACKET_SIZE,
};
use crate::TransportError;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::Transport;
use std::time::Duration;
use tokio::sync::mpsc;

/// The longest correlation data kept for an answer: each JSON request waiting for its answer
/// holds a copy, so this bounds that memory (MQTT allows 65,535 bytes; clients use a few).
pub const MAX_CORRELATION: usize = 256;

/// A request received on the MQTT 5 connection.
#[derive(Debug)]
pub struct Request {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The publish's response topic property, if it had one.
    pub response_topic: Option<String>,
    /// The publish's correlation data, if it had any.
    pub correlation: Option<Vec<u8>>,
    /// Its share of [`crate::transport::INCOMING_BYTES`], released when dropped.
    pub held: Held,
}

/// A live MQTT 5 connection that keeps reconnecting in the background.
pub struct Connection5 {
    client: AsyncClient,
    pub incoming: mpsc::Receiver<Request>,
    task: ConnectionTask,
}

impl Connection5 {
    /// Connects as `opts.user` with MQTT client id `client_id`, subscribed to `filters` on
    /// every (re)connect. Returns at once; the connection comes up in the background.
    pub fn open(
        opts: &BrokerOptions,
        client_id: String,
        filters: Vec<String>,
    ) -> Result<Connection5, TransportError> {
        let addr = parse_url(&opts.url)?;
        let mut mo = MqttOptions::new(client_id, addr.host.clone(), addr.port);
        mo.set_keep_alive(opts.keep_alive.max(Duration::from_secs(1)));
        mo.set_clean_start(true);
        mo.set_max_packet_size(Some(MAX_PACKET_SIZE as u32));
        // Read while a write waits: a large reply leaving as a large request arrives must not
        // leave this connection and the broker each waiting for the other (docs/broker.md).
        mo.set_read_ahead(mqpaxos_client::transport::READ_AHEAD);
        mo.set_credentials(opts.user.clone(), opts.password.clone().unwrap_or_default());
        mo.set_connection_timeout(5);
        if addr.tls {
            mo.set_transport(Transport::tls_with_config(tls_config(
                opts.ca_file.as_ref(),
            )?));
        }
        mo.set_network_options(network_options());
        let (client, eventloop) = AsyncClient::new(mo, 10_000);
        let (tx, incoming) = mpsc::channel(10_000);
        let task = ConnectionTask::spawn(Events5 {
            eventloop,
            client: client.clone(),
            filters,
            tx,
            url: opts.url.clone(),
        });
        Ok(Connection5 {
            client,
            incoming,
            task,
        })
    }

    /// Publishes an answer at QoS 0 (a lost one is asked for again, like every request),
    /// with `correlation` as its correlation data; `false` if it could not be queued.
    pub fn try_publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        correlation: Option<Vec<u8>>,
    ) -> bool {
        if !self.task.is_connected() {
            return false;
        }
        let props = PublishProperties {
            correlation_data: correlation.map(Into::into),
            ..PublishProperties::default()
        };
        self.client
            .try_publish_with_properties(topic, QoS::AtMostOnce, false, payload, props)
            .is_ok()
    }

    /// Disconnects cleanly and stops the background task.
    pub async fn close(self) {
        self.task.close(self.client.disconnect()).await;
    }
}

/// The MQTT 5 half of a [`Connection5`]'s background task.
struct Events5 {
    eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    tx: mpsc::Sender<Request>,
    url: String,
}

impl ConnectionEvents for Events5 {
    type Publish = Publish;
    type Error = ConnectionError;

    async fn next(&mut self) -> LoopEvent<Publish, ConnectionError> {
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => LoopEvent::ConnAck,
            Ok(Event::Incoming(Packet::Publish(p))) => LoopEvent::Publish(p),
            Ok(_) => LoopEvent::Other,
            Err(e) => LoopEvent::Failed(e),
        }
    }

    fn size(publish: &Publish) -> usize {
        publish.payload.len()
    }

    async fn restore(&mut self) {
        for f in &self.filters {
            let _ = self.client.subscribe(f.clone(), QoS::AtMostOnce).await;
        }
    }

    async fn received(&mut self, p: Publish, held: Held) -> bool {
        let Ok(topic) = String::from_utf8(p.topic.to_vec()) else {
            return true;
        };
        let (response_topic, correlation) = match p.properties {
            Some(props) => (
                props.response_topic,
                props.correlation_data.map(|b| b.to_vec()),
            ),
            None => (None, None),
        };
        let request = Request {
            topic,
            payload: p.payload.to_vec(),
            response_topic,
            correlation,
            held,
        };
        self.tx.send(request).await.is_ok()
    }

    fn failed(&mut self, e: ConnectionError, was_connected: bool, _retry_in: Duration) -> bool {
        let url = &self.url;
        if let ConnectionError::ConnectionRefused(code) = &e {
            use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code;
            if matches!(code, Code::BadUserNamePassword | Code::NotAuthorized) {
                // The main connection logs in as the same user: it reports this
                // and stops the server with one line, which a second line here,
                // racing it to the log, would only muddle.
                tracing::debug!(broker = %url, ?code, "the broker refused the MQTT 5 connection for JSON requests");
            } else {
                tracing::warn!(broker = %url, ?code, "the broker refused the MQTT 5 connection for JSON requests");
            }
        } else if was_connected {
            tracing::warn!(broker = %url, error = %e, "lost the MQTT 5 connection for JSON requests; reconnecting");
        }
        // Every failure is retried: the main connection decides when the server gives up.
        true
    }
}
