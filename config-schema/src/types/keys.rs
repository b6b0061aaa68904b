//! Public keys: SSH keys for cloud-init and minisign keys for signed changes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::decode::{ParseStr, ValueError};

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

super::string_newtype!(
    /// An OpenSSH public key line: "ssh-ed25519 AAAA... comment".
    SshPublicKey
);

impl ParseStr for SshPublicKey {
    const EXPECTED: &'static str = "an SSH public key";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let mut fields = s.split_whitespace();
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            return Err(ValueError::new(
                "invalid SSH public key: expected \"TYPE BASE64 [COMMENT]\"",
            )
            .hint("paste the whole line of your id_*.pub file"));
        };
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(
                ValueError::new(format!("unsupported SSH key type \"{kind}\""))
                    .hint(crate::diagnostic::expected_one_of(kind, SSH_KEY_TYPES)),
            );
        }
        let bytes = STANDARD.decode(blob).map_err(|_| {
            ValueError::new("invalid SSH public key: the key data is not valid base64")
        })?;
        // The blob starts with its own type as a length-prefixed string.
        let embedded = bytes
            .get(..4)
            .and_then(|len| <[u8; 4]>::try_from(len).ok())
            .map(|len| u32::from_be_bytes(len) as usize)
            .and_then(|len| bytes.get(4..4 + len));
        if embedded != Some(kind.as_bytes()) {
            return Err(ValueError::new(format!(
                "invalid SSH public key: the key data is not a {kind} key"
            ))
            .hint("the key looks truncated or its type was changed"));
        }
        Ok(SshPublicKey(s.trim().to_string()))
    }
}
super::string_value!(
    SshPublicKey,
    "SSH public key",
    "An OpenSSH public key line, e.g. \"ssh-ed25519 AAAA... ops@laptop\"."
);

super::string_newtype!(
    /// A minisign public key in its base64 form ("RWQ...").
    MinisignKey
);

impl MinisignKey {
    pub fn public_key(&self) -> Option<minisign_verify::PublicKey> {
        minisign_verify::PublicKey::from_base64(&self.0).ok()
    }
}

impl ParseStr for MinisignKey {
    const EXPECTED: &'static str = "a minisign public key";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        minisign_verify::PublicKey::from_base64(s).map_err(|_| {
            ValueError::new("invalid minisign public key")
                .hint("use the second line of minisign.pub (it starts with \"RW\"), not the comment or the secret key")
        })?;
        Ok(MinisignKey(s.to_string()))
    }
}
super::string_value!(
    MinisignKey,
    "minisign public key",
    "A minisign public key: the base64 line of minisign.pub, starting with \"RW\"."
);

#[cfg(test)]
mod tests {
    use super::*;

    // From the minisign documentation.
    pub const MINISIGN_PUB: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop";

    #[test]
    fn ssh_keys() {
        assert!(SshPublicKey::parse_str(ED25519).is_ok());
        assert!(SshPublicKey::parse_str("ssh-ed25519").is_err());
        assert!(SshPublicKey::parse_str("ssh-dss AAAA").is_err());
        assert!(SshPublicKey::parse_str("ssh-ed25519 !!!").is_err());
        // A valid RSA blob labelled as ed25519.
        assert!(
            SshPublicKey::parse_str(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            )
            .is_err()
        );
    }

    #[test]
    fn minisign_keys() {
        assert!(MinisignKey::parse_str(MINISIGN_PUB).is_ok());
        assert!(MinisignKey::parse_str("RWQ...").is_err());
        assert!(MinisignKey::parse_str("untrusted comment: minisign public key").is_err());
    }
}
