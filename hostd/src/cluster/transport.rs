//! Sealed gossip transport: chitchat over UDP, every datagram compressed,
//! encrypted and authenticated with the cluster key.
//!
//! A datagram is
//!
//! ```text
//! "HXG1" | nonce (24 random bytes) | XChaCha20-Poly1305(deflate(message)) with its 16-byte tag
//! ```
//!
//! with the magic as associated data. The nonce is random: XChaCha's 192
//! bits make a collision negligible without any state shared between
//! restarts. Compression is there because chitchat fills its messages up
//! to the UDP maximum and the seal adds 44 bytes; config text compresses
//! well, so a full message still fits.
//!
//! Whatever arrives that is not sealed with the cluster key is counted
//! and dropped; nothing a sender puts in a datagram stops the gossip loop.
//! There is no replay protection: a captured datagram can be sent again,
//! which chitchat tolerates (its state only moves forward by version). A
//! replayed SYN with a forged source address still gets a (larger) reply
//! sent to that address, as with plain chitchat.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::{
    AeadCore as _, AeadInPlace as _, KeyInit as _, Tag, XChaCha20Poly1305, XNonce,
};
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable as _, Serializable as _};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use tracing::{debug, warn};

use super::key::ClusterKey;

/// First bytes of every sealed datagram; also the associated data, so a
/// future format cannot be confused with this one.
pub const MAGIC: &[u8; 4] = b"HXG1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + NONCE_LEN;
/// Bytes the seal adds to the compressed message.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// The largest UDP payload over IPv4, and chitchat's own message limit
/// (its `MAX_UDP_DATAGRAM_PAYLOAD_SIZE`, which it does not export).
pub const MAX_DATAGRAM: usize = 65_507;
/// The largest serialized message accepted after decompression: chitchat
/// never makes a bigger one, so anything bigger is not from a member.
pub const MAX_PLAINTEXT: usize = MAX_DATAGRAM;
/// Room for any UDP payload, so an oversized datagram is seen whole (and
/// dropped) rather than silently truncated.
const RECV_BUFFER_LEN: usize = 65_536;

/// How often a sender without the cluster key is reported at warn level;
/// each datagram is also logged at debug. A hostile host can send as many
/// as it likes, so the log must not grow with them.
const FOREIGN_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Why a datagram could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("datagram too short to be sealed")]
    TooShort,
    #[error("datagram larger than {MAX_DATAGRAM} bytes, more than any sealed one")]
    TooLong,
    #[error("datagram does not start with the gossip magic")]
    BadMagic,
    #[error("datagram is not sealed with the cluster key (wrong key or tampered)")]
    Unauthenticated,
    #[error("sealed message is not valid deflate data")]
    Decompress,
    #[error("sealed message decompresses to more than {MAX_PLAINTEXT} bytes")]
    TooLarge,
}

/// Compresses and seals a serialized message into a datagram.
pub fn seal(key: &ClusterKey, plaintext: &[u8]) -> Vec<u8> {
    encrypt(key, &compress(plaintext))
}

/// Opens a datagram made by [`seal`] with the same key: the serialized
/// message, at most [`MAX_PLAINTEXT`] bytes.
pub fn open(key: &ClusterKey, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
    decompress(&decrypt(key, datagram)?)
}

fn compress(plaintext: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail: flate2 only passes on errors of the
    // writer it wraps.
    encoder
        .write_all(plaintext)
        .expect("deflate into memory cannot fail");
    encoder.finish().expect("deflate into memory cannot fail")
}

fn decompress(compressed: &[u8]) -> Result<Vec<u8>, OpenError> {
    let mut out = Vec::new();
    // One byte past the limit tells "too large" from "exactly the limit";
    // `take` stops the decoder there, so a bomb costs at most that much.
    DeflateDecoder::new(compressed)
        .take(MAX_PLAINTEXT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| OpenError::Decompress)?;
    if out.len() > MAX_PLAINTEXT {
        return Err(OpenError::TooLarge);
    }
    Ok(out)
}

fn cipher(key: &ClusterKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.bytes().into())
}

/// Seals already compressed bytes.
fn encrypt(key: &ClusterKey, compressed: &[u8]) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let mut datagram = Vec::with_capacity(OVERHEAD + compressed.len());
    datagram.extend_from_slice(MAGIC);
    datagram.extend_from_slice(&nonce);
    datagram.extend_from_slice(compressed);
    // Fails only past 256 GiB of plaintext.
    let tag = cipher(key)
        .encrypt_in_place_detached(&nonce, MAGIC, &mut datagram[HEADER_LEN..])
        .expect("a datagram is far below the cipher's length limit");
    datagram.extend_from_slice(&tag);
    datagram
}

/// Checks and decrypts a datagram: the compressed message.
fn decrypt(key: &ClusterKey, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
    if datagram.len() < OVERHEAD {
        return Err(OpenError::TooShort);
    }
    // Never sent by a member (see `seal_for_wire`); not worth decrypting.
    if datagram.len() > MAX_DATAGRAM {
        return Err(OpenError::TooLong);
    }
    let (header, sealed) = datagram.split_at(HEADER_LEN);
    let (magic, nonce) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(OpenError::BadMagic);
    }
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut plaintext = ciphertext.to_vec();
    cipher(key)
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            MAGIC,
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| OpenError::Unauthenticated)?;
    Ok(plaintext)
}

/// The datagram to send for a serialized message, or None when it would
/// be too large for UDP (or for the receiver's limit).
fn seal_for_wire(key: &ClusterKey, plaintext: &[u8]) -> Option<Vec<u8>> {
    if plaintext.len() > MAX_PLAINTEXT {
        return None;
    }
    let datagram = seal(key, plaintext);
    (datagram.len() <= MAX_DATAGRAM).then_some(datagram)
}

/// Traffic of the gossip socket since start. Every received datagram
/// counts in exactly one of `received_packets`, `dropped_unauthenticated`
/// and `dropped_malformed`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Datagrams sent.
    pub sent_packets: AtomicU64,
    /// Bytes of the datagrams sent (sealed size).
    pub sent_bytes: AtomicU64,
    /// Authenticated datagrams handed to chitchat.
    pub received_packets: AtomicU64,
    /// Bytes of those datagrams (sealed size).
    pub received_bytes: AtomicU64,
    /// Datagrams with the magic but not sealed with the cluster key.
    pub dropped_unauthenticated: AtomicU64,
    /// Datagrams that are not sealed gossip (short, wrong magic), or that
    /// are authenticated but hold no valid chitchat message.
    pub dropped_malformed: AtomicU64,
    /// Messages not sent because they do not fit a datagram.
    pub dropped_oversized_outgoing: AtomicU64,
}

/// A copy of [`TransportCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportStats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
    pub dropped_unauthenticated: u64,
    pub dropped_malformed: u64,
    pub dropped_oversized_outgoing: u64,
}

impl TransportCounters {
    /// The current values. Each is read on its own, so a snapshot taken
    /// during traffic may mix values a packet apart.
    pub fn snapshot(&self) -> TransportStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TransportStats {
            sent_packets: get(&self.sent_packets),
            sent_bytes: get(&self.sent_bytes),
            received_packets: get(&self.received_packets),
            received_bytes: get(&self.received_bytes),
            dropped_unauthenticated: get(&self.dropped_unauthenticated),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_oversized_outgoing: get(&self.dropped_oversized_outgoing),
        }
    }
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Ordering::Relaxed);
}

/// The chitchat transport of hostd: UDP, sealed with the cluster key.
#[derive(Debug)]
pub struct SealedUdpTransport {
    key: ClusterKey,
    counters: Arc<TransportCounters>,
}

impl SealedUdpTransport {
    /// A transport sealing with `key`; its sockets count into `counters`.
    pub fn new(key: ClusterKey, counters: Arc<TransportCounters>) -> Self {
        SealedUdpTransport { key, counters }
    }
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket =
            SealedUdpSocket::bind(listen_addr, self.key.clone(), self.counters.clone()).await?;
        Ok(Box::new(socket))
    }
}

/// A bound gossip socket; see [`SealedUdpTransport`].
pub struct SealedUdpSocket {
    socket: tokio::net::UdpSocket,
    key: ClusterKey,
    counters: Arc<TransportCounters>,
    send_buffer: Vec<u8>,
    recv_buffer: Box<[u8]>,
    last_foreign_warning: Option<Instant>,
}

impl std::fmt::Debug for SealedUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedUdpSocket")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl SealedUdpSocket {
    /// Binds a UDP socket on `addr` (port 0: any free port).
    pub async fn bind(
        addr: SocketAddr,
        key: ClusterKey,
        counters: Arc<TransportCounters>,
    ) -> anyhow::Result<SealedUdpSocket> {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind {addr}/udp for gossip"))?;
        Ok(SealedUdpSocket {
            socket,
            key,
            counters,
            send_buffer: Vec::with_capacity(MAX_PLAINTEXT),
            recv_buffer: vec![0; RECV_BUFFER_LEN].into_boxed_slice(),
            last_foreign_warning: None,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The message in a received datagram, or None (counted and logged)
    /// when there is none to hand to chitchat.
    fn accept(&mut self, from: SocketAddr, len: usize) -> Option<ChitchatMessage> {
        let datagram = &self.recv_buffer[..len];
        let plaintext = match open(&self.key, datagram) {
            Ok(plaintext) => plaintext,
            Err(
                error @ (OpenError::TooShort
                | OpenError::TooLong
                | OpenError::BadMagic
                | OpenError::Unauthenticated),
            ) => {
                let counter = if error == OpenError::Unauthenticated {
                    &self.counters.dropped_unauthenticated
                } else {
                    &self.counters.dropped_malformed
                };
                bump(counter, 1);
                debug!(%from, len, %error, "dropped gossip datagram");
                self.warn_foreign(from);
                return None;
            }
            // Only a holder of the key gets this far: worth a warning.
            Err(error @ (OpenError::Decompress | OpenError::TooLarge)) => {
                bump(&self.counters.dropped_malformed, 1);
                warn!(%from, len, %error, "dropped authenticated gossip datagram");
                return None;
            }
        };
        match ChitchatMessage::deserialize(&mut plaintext.as_slice()) {
            Ok(message) => {
                bump(&self.counters.received_packets, 1);
                bump(&self.counters.received_bytes, len);
                Some(message)
            }
            Err(error) => {
                bump(&self.counters.dropped_malformed, 1);
                warn!(
                    %from,
                    len,
                    error = %format!("{error:#}"),
                    "dropped authenticated gossip datagram: not a chitchat message"
                );
                None
            }
        }
    }

    /// A warning that someone without the key talks to us (typically a
    /// member with a different key file), at most once per interval.
    fn warn_foreign(&mut self, from: SocketAddr) {
        let now = Instant::now();
        if self
            .last_foreign_warning
            .is_some_and(|last| now.duration_since(last) < FOREIGN_WARNING_INTERVAL)
        {
            return;
        }
        self.last_foreign_warning = Some(now);
        let stats = self.counters.snapshot();
        warn!(
            %from,
            dropped_unauthenticated = stats.dropped_unauthenticated,
            dropped_malformed = stats.dropped_malformed,
            "dropping gossip datagrams not sealed with the cluster key; \
             does every member have the same [gossip] key_file? (reported once a minute)"
        );
    }
}

/// Receive errors after which the socket still works (as chitchat's own
/// UDP socket treats them).
fn is_transient_io_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
    )
}

#[async_trait]
impl Socket for SealedUdpSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        self.send_buffer.clear();
        message.serialize(&mut self.send_buffer);
        // An Err would be logged by chitchat and the message lost anyway;
        // returning Ok keeps "Err = the socket is broken" true.
        let Some(datagram) = seal_for_wire(&self.key, &self.send_buffer) else {
            bump(&self.counters.dropped_oversized_outgoing, 1);
            warn!(
                %to,
                serialized_len = self.send_buffer.len(),
                "gossip message does not fit a UDP datagram even compressed; not sent"
            );
            return Ok(());
        };
        // A failed send_to (peer's network unreachable) is an Err, as with
        // chitchat's own UDP socket: chitchat logs it and goes on.
        self.socket
            .send_to(&datagram, to)
            .await
            .with_context(|| format!("cannot send gossip to {to}"))?;
        bump(&self.counters.sent_packets, 1);
        bump(&self.counters.sent_bytes, datagram.len());
        Ok(())
    }

    /// Cancel-safe, as chitchat needs: the only await is `recv_from`.
    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (len, from) = match self.socket.recv_from(&mut self.recv_buffer).await {
                Ok(received) => received,
                Err(error) if is_transient_io_error(&error) => {
                    warn!(%error, "transient gossip receive error");
                    continue;
                }
                Err(error) => return Err(error).context("gossip socket broken"),
            };
            if let Some(message) = self.accept(from, len) {
                return Ok((from, message));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text that looks like the config chitchat will carry.
    fn config_text(len: usize) -> Vec<u8> {
        let line = b"[vm.web]\nmemory = \"4G\"\ncpus = 2\nnetwork = [\"lan\"]\n";
        line.iter().copied().cycle().take(len).collect()
    }

    /// Bytes deflate cannot shrink (xorshift, deterministic).
    fn noise(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn seal_open_round_trip() {
        let key = ClusterKey::generate();
        for plaintext in [Vec::new(), b"x".to_vec(), config_text(60_000), noise(1000)] {
            let datagram = seal(&key, &plaintext);
            assert!(datagram.starts_with(MAGIC));
            assert_eq!(open(&key, &datagram).unwrap(), plaintext);
        }
    }

    #[test]
    fn config_text_compresses_so_a_full_message_fits() {
        let key = ClusterKey::generate();
        let datagram = seal_for_wire(&key, &config_text(MAX_PLAINTEXT)).unwrap();
        assert!(datagram.len() < MAX_PLAINTEXT / 10, "{}", datagram.len());
    }

    #[test]
    fn nonces_differ_between_seals() {
        let key = ClusterKey::generate();
        let a = seal(&key, b"same");
        let b = seal(&key, b"same");
        assert_ne!(a[MAGIC.len()..HEADER_LEN], b[MAGIC.len()..HEADER_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_key_is_unauthenticated() {
        let datagram = seal(&ClusterKey::generate(), b"hello");
        assert_eq!(
            open(&ClusterKey::generate(), &datagram),
            Err(OpenError::Unauthenticated)
        );
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let key = ClusterKey::generate();
        let datagram = seal(&key, &config_text(200));
        for bit in 0..datagram.len() * 8 {
            let mut tampered = datagram.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let expected = if bit / 8 < MAGIC.len() {
                OpenError::BadMagic
            } else {
                OpenError::Unauthenticated
            };
            assert_eq!(open(&key, &tampered), Err(expected), "bit {bit}");
        }
    }

    #[test]
    fn truncated_datagrams_are_rejected() {
        let key = ClusterKey::generate();
        let datagram = seal(&key, b"a message");
        for len in 0..datagram.len() {
            let expected = if len < OVERHEAD {
                OpenError::TooShort
            } else {
                OpenError::Unauthenticated
            };
            assert_eq!(open(&key, &datagram[..len]), Err(expected), "len {len}");
        }
        // Appending is as bad as truncating: the tag moves.
        let mut extended = datagram.clone();
        extended.push(0);
        assert_eq!(open(&key, &extended), Err(OpenError::Unauthenticated));
    }

    #[test]
    fn wrong_magic_and_oversized_datagrams_are_rejected() {
        let key = ClusterKey::generate();
        let mut datagram = seal(&key, b"a message");
        datagram[..4].copy_from_slice(b"HXG2");
        assert_eq!(open(&key, &datagram), Err(OpenError::BadMagic));
        let mut huge = MAGIC.to_vec();
        huge.resize(MAX_DATAGRAM + 1, 0);
        assert_eq!(open(&key, &huge), Err(OpenError::TooLong));
    }

    #[test]
    fn authenticated_deflate_bomb_is_malformed_and_cheap() {
        let key = ClusterKey::generate();
        // 64 MiB of zeros deflates to about 64 KiB: one datagram.
        let bomb = compress(&vec![0u8; 64 << 20]);
        assert!(bomb.len() + OVERHEAD <= MAX_DATAGRAM, "{}", bomb.len());
        let datagram = encrypt(&key, &bomb);
        let started = Instant::now();
        assert_eq!(open(&key, &datagram), Err(OpenError::TooLarge));
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn plaintext_limit_is_inclusive() {
        let key = ClusterKey::generate();
        let at_limit = encrypt(&key, &compress(&config_text(MAX_PLAINTEXT)));
        assert_eq!(open(&key, &at_limit).unwrap().len(), MAX_PLAINTEXT);
        let over = encrypt(&key, &compress(&config_text(MAX_PLAINTEXT + 1)));
        assert_eq!(open(&key, &over), Err(OpenError::TooLarge));
    }

    #[test]
    fn authenticated_invalid_deflate_is_malformed() {
        let key = ClusterKey::generate();
        // A final block of the reserved type 3.
        let datagram = encrypt(&key, &[0x07, 0x00, 0x00]);
        assert_eq!(open(&key, &datagram), Err(OpenError::Decompress));
    }

    #[test]
    fn messages_that_do_not_fit_are_not_sealed_for_the_wire() {
        let key = ClusterKey::generate();
        assert!(seal_for_wire(&key, &noise(MAX_PLAINTEXT)).is_none());
        assert!(seal_for_wire(&key, &config_text(MAX_PLAINTEXT + 1)).is_none());
        assert!(seal_for_wire(&key, &noise(60_000)).is_some());
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn open_never_panics_on_arbitrary_bytes(garbage in bytes(2000)) {
            let key = ClusterKey::generate();
            prop_assert!(open(&key, &garbage).is_err());
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&garbage);
            prop_assert!(open(&key, &with_magic).is_err());
        }

        #[test]
        fn open_never_panics_on_authenticated_garbage(garbage in bytes(2000)) {
            let key = ClusterKey::generate();
            match open(&key, &encrypt(&key, &garbage)) {
                Ok(plaintext) => prop_assert!(plaintext.len() <= MAX_PLAINTEXT),
                Err(error) => prop_assert!(
                    matches!(error, OpenError::Decompress | OpenError::TooLarge),
                    "{error}"
                ),
            }
        }

        /// The socket hands authenticated plaintext to chitchat's parser:
        /// a member's bug must not crash the others.
        #[test]
        fn chitchat_parser_never_panics(
            kind in 0u8..4,
            garbage in bytes(2000),
        ) {
            // Chitchat's message header (magic 45139 LE, version 0, kind),
            // so the fuzz reaches the message bodies.
            let mut message = vec![0x53, 0xb0, 0, kind];
            message.extend_from_slice(&garbage);
            let _ = ChitchatMessage::deserialize(&mut message.as_slice());
            let _ = ChitchatMessage::deserialize(&mut garbage.as_slice());
        }

        #[test]
        fn round_trip_of_arbitrary_payloads(payload in bytes(60_000)) {
            let key = ClusterKey::generate();
            let datagram = seal_for_wire(&key, &payload).unwrap();
            prop_assert_eq!(open(&key, &datagram).unwrap(), payload);
        }
    }

    #[test]
    fn snapshot_copies_the_counters() {
        let counters = TransportCounters::default();
        bump(&counters.sent_packets, 1);
        bump(&counters.sent_bytes, 100);
        bump(&counters.dropped_malformed, 2);
        assert_eq!(
            counters.snapshot(),
            TransportStats {
                sent_packets: 1,
                sent_bytes: 100,
                dropped_malformed: 2,
                ..TransportStats::default()
            }
        );
    }

    // Real sockets on 127.0.0.1.

    const LOCALHOST: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        0,
    ));
    /// Long enough for loopback delivery, short enough for a quick test.
    const QUIET: Duration = Duration::from_millis(300);

    async fn socket(key: &ClusterKey) -> (SealedUdpSocket, Arc<TransportCounters>) {
        let counters = Arc::new(TransportCounters::default());
        let socket = SealedUdpSocket::bind(LOCALHOST, key.clone(), counters.clone())
            .await
            .unwrap();
        (socket, counters)
    }

    fn syn(cluster_id: &str) -> ChitchatMessage {
        ChitchatMessage::Syn {
            cluster_id: cluster_id.to_string(),
            // chitchat does not export `Digest`; inference names it.
            digest: Default::default(),
        }
    }

    async fn recv(socket: &mut SealedUdpSocket) -> (SocketAddr, ChitchatMessage) {
        tokio::time::timeout(Duration::from_secs(5), socket.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn two_sockets_exchange_messages() {
        let key = ClusterKey::generate();
        let (mut a, a_counters) = socket(&key).await;
        let (mut b, b_counters) = socket(&key).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

        a.send(b_addr, syn("horcrux")).await.unwrap();
        assert_eq!(recv(&mut b).await, (a_addr, syn("horcrux")));
        b.send(a_addr, ChitchatMessage::BadCluster).await.unwrap();
        assert_eq!(recv(&mut a).await, (b_addr, ChitchatMessage::BadCluster));

        let a_stats = a_counters.snapshot();
        let b_stats = b_counters.snapshot();
        assert_eq!(a_stats.sent_packets, 1);
        assert_eq!(b_stats.received_packets, 1);
        assert_eq!(a_stats.sent_bytes, b_stats.received_bytes);
        assert_eq!(a_stats.received_packets, 1);
        assert_eq!(
            b_stats.dropped_unauthenticated + b_stats.dropped_malformed,
            0
        );
    }

    #[tokio::test]
    async fn transport_open_gives_a_working_socket() {
        // `Transport::open` hides the socket's address: bind a free port
        // first, then reuse it.
        let port = std::net::UdpSocket::bind(LOCALHOST)
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let key = ClusterKey::generate();
        let counters = Arc::new(TransportCounters::default());
        let transport = SealedUdpTransport::new(key.clone(), counters.clone());
        let mut opened = transport.open(listen_addr).await.unwrap();
        assert!(transport.open(listen_addr).await.is_err(), "port in use");

        let (mut peer, _) = socket(&key).await;
        peer.send(listen_addr, syn("c")).await.unwrap();
        let (from, message) = tokio::time::timeout(Duration::from_secs(5), opened.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((from, message), (peer.local_addr().unwrap(), syn("c")));
        opened
            .send(from, ChitchatMessage::BadCluster)
            .await
            .unwrap();
        assert_eq!(recv(&mut peer).await.1, ChitchatMessage::BadCluster);
        assert_eq!(counters.snapshot().received_packets, 1);
        assert_eq!(counters.snapshot().sent_packets, 1);
    }

    #[tokio::test]
    async fn a_socket_with_another_key_receives_nothing() {
        let (mut a, _) = socket(&ClusterKey::generate()).await;
        let (mut stranger, stranger_counters) = socket(&ClusterKey::generate()).await;
        a.send(stranger.local_addr().unwrap(), syn("horcrux"))
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(QUIET, stranger.recv()).await.is_err(),
            "a message sealed with another key was delivered"
        );
        let stats = stranger_counters.snapshot();
        assert_eq!(stats.dropped_unauthenticated, 1);
        assert_eq!(stats.received_packets, 0);
    }

    #[tokio::test]
    async fn garbage_is_counted_and_the_next_message_arrives() {
        let key = ClusterKey::generate();
        let (mut receiver, counters) = socket(&key).await;
        let to = receiver.local_addr().unwrap();
        let raw = std::net::UdpSocket::bind(LOCALHOST).unwrap();

        raw.send_to(b"junk", to).unwrap();
        // Plain chitchat, as an unsealed peer would send it.
        raw.send_to(&syn("plain").serialize_to_vec(), to).unwrap();
        // Sealed, but not a chitchat message.
        raw.send_to(&seal(&key, b"\xffnot chitchat"), to).unwrap();
        // The magic, then noise: looks sealed, is not.
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&noise(100));
        raw.send_to(&forged, to).unwrap();
        // An empty datagram.
        raw.send_to(&[], to).unwrap();
        raw.send_to(&seal(&key, &syn("valid").serialize_to_vec()), to)
            .unwrap();

        assert_eq!(
            recv(&mut receiver).await,
            (raw.local_addr().unwrap(), syn("valid"))
        );
        assert_eq!(
            counters.snapshot(),
            TransportStats {
                received_packets: 1,
                received_bytes: counters.snapshot().received_bytes,
                dropped_unauthenticated: 1,
                dropped_malformed: 4,
                ..TransportStats::default()
            }
        );
    }

    #[tokio::test]
    async fn an_oversized_message_is_dropped_not_an_error() {
        let (mut a, counters) = socket(&ClusterKey::generate()).await;
        let (b, _) = socket(&ClusterKey::generate()).await;
        let huge = syn(&"x".repeat(MAX_PLAINTEXT));
        a.send(b.local_addr().unwrap(), huge).await.unwrap();
        let stats = counters.snapshot();
        assert_eq!(stats.dropped_oversized_outgoing, 1);
        assert_eq!(stats.sent_packets, 0);
    }
}
