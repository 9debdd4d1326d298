//! Envelope encryption: values are sealed with AES-256-GCM under a data key, and data keys are sealed
//! under the master key. Every sealed value records the id of the key that sealed it (the caller stores
//! it beside the bytes) and is bound to its context through the additional authenticated data, so a
//! ciphertext moved to another row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

const VERSION: u8 = 1;
const KEY_LEN: usize = 32;

/// The master key: 32 bytes that never leave the process and never reach the store.
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("check_value", &self.check_value())
            .finish()
    }
}

impl MasterKey {
    /// Reads a master key from the text of a key file: 32 bytes, base64 (standard alphabet, padding
    /// optional, surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<Self, Error> {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim()))
                .map_err(|_| Error::MasterKeyFormat)?,
        );
        Self::from_key(key_from_slice(&decoded).ok_or(Error::MasterKeyFormat)?)
    }

    /// Builds a master key from raw bytes.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Result<Self, Error> {
        let out = Self::from_key(Zeroizing::new(bytes));
        // `bytes` is the caller's copy, moved in: wipe it as well.
        bytes.zeroize();
        out
    }

    fn from_key(bytes: Zeroizing<[u8; KEY_LEN]>) -> Result<Self, Error> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes.as_ref())
            .map_err(|_| Error::MasterKeyFormat)?;
        Ok(Self { bytes, key })
    }

    /// Generates a fresh master key and returns it with its file text (base64 and a newline).
    pub fn generate() -> Result<(Self, Zeroizing<String>), Error> {
        let bytes = random_key()?;
        let text = Zeroizing::new(format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())
        ));
        Ok((Self::from_key(bytes)?, text))
    }

    /// A value that identifies the master key without revealing it: HMAC-SHA256 of a fixed label,
    /// hex, 32 characters. The store records it; a process given another key sees a different value.
    pub fn check_value(&self) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_ref());
        let tag = hmac::sign(&key, b"castellan master key check value v1");
        hex::encode(&tag.as_ref()[..16])
    }

    /// Seals a data key under the master key, bound to the data key's id.
    pub fn wrap(&self, dek: &DataKey) -> Result<Vec<u8>, Error> {
        seal(&self.key, dek.id.as_bytes(), dek.bytes.as_ref())
    }

    /// Opens a data key sealed by [`MasterKey::wrap`].
    pub fn unwrap(&self, id: &str, wrapped: &[u8]) -> Result<DataKey, Error> {
        let plain = open(&self.key, id.as_bytes(), wrapped)?;
        DataKey::from_parts(id.to_owned(), key_from_slice(&plain).ok_or(Error::Decrypt)?)
    }
}

/// A fresh random key, in memory that is wiped when dropped.
fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::KeyGeneration)?;
    Ok(bytes)
}

/// A copy of `s` as a key, if it is `KEY_LEN` bytes long, in memory that is wiped when dropped (a
/// plain `[u8; 32]` from `try_into` would leave a copy of the key on the stack).
fn key_from_slice(s: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    if s.len() != KEY_LEN {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    bytes.copy_from_slice(s);
    Some(bytes)
}

/// A data key: seals secret values at rest. Stored only wrapped by the master key.
pub struct DataKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// Generates a new data key with a random id.
    pub fn generate() -> Result<Self, Error> {
        let bytes = random_key()?;
        let mut id = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| Error::KeyGeneration)?;
        Self::from_parts(format!("dk-{}", hex::encode(id)), bytes)
    }

    fn from_parts(id: String, bytes: Zeroizing<[u8; KEY_LEN]>) -> Result<Self, Error> {
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, bytes.as_ref()).map_err(|_| Error::Encrypt)?;
        Ok(Self { id, bytes, key })
    }

    /// The id recorded beside every value this key seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`; `context` (for example `signing-key:<kid>`) must be given again to open it.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        seal(&self.key, context.as_bytes(), plaintext)
    }

    /// Opens a value sealed by [`DataKey::seal`] with the same context.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        open(&self.key, context.as_bytes(), sealed)
    }
}

fn seal(key: &RandomizedNonceKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut in_out = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
        .map_err(|_| Error::Encrypt)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
    out.push(VERSION);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&in_out);
    in_out.zeroize();
    Ok(out)
}

fn open(key: &RandomizedNonceKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (version, rest) = sealed.split_first().ok_or(Error::Decrypt)?;
    if *version != VERSION || rest.len() < NONCE_LEN {
        return Err(Error::Decrypt);
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Decrypt)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| Error::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let (mk, _) = MasterKey::generate().expect("mk");
        let dek = DataKey::generate().expect("dek");
        let wrapped = mk.wrap(&dek).expect("wrap");
        let dek2 = mk.unwrap(dek.id(), &wrapped).expect("unwrap");
        let sealed = dek.seal("ctx-a", b"secret bytes").expect("seal");
        assert!(!sealed.windows(12).any(|w| w == b"secret bytes"));
        assert_eq!(
            dek2.open("ctx-a", &sealed).expect("open").as_slice(),
            b"secret bytes"
        );
        assert!(matches!(dek2.open("ctx-b", &sealed), Err(Error::Decrypt)));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(dek2.open("ctx-a", &tampered), Err(Error::Decrypt)));
    }

    #[test]
    fn wrong_master_key_cannot_unwrap_and_check_values_differ() {
        let (a, _) = MasterKey::generate().expect("a");
        let (b, _) = MasterKey::generate().expect("b");
        let dek = DataKey::generate().expect("dek");
        let wrapped = a.wrap(&dek).expect("wrap");
        assert!(b.unwrap(dek.id(), &wrapped).is_err());
        assert!(
            a.unwrap("dk-other", &wrapped).is_err(),
            "wrapped key is bound to its id"
        );
        assert_ne!(a.check_value(), b.check_value());
    }

    #[test]
    fn master_key_file_format() {
        let (mk, text) = MasterKey::generate().expect("mk");
        let again = MasterKey::from_base64(&text).expect("parse");
        assert_eq!(mk.check_value(), again.check_value());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64 !!").is_err());
        assert!(!format!("{mk:?}").contains(text.trim()));
    }
}
