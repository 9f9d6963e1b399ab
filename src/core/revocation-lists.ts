/**
 * Certificate revocation lists for mutual TLS, checked before OpenSSL is given them: OpenSSL refuses every client
 * certificate whose CA has no list in the file, and every one when that CA's list has expired, and says only
 * "certificate verify failed" at each handshake. So the start names a list that is not one, a CA left without a list
 * (or with one it did not sign), and a list past its next update.
 *
 * The ASN.1 parser is loaded only when lists are given: most servers never pay for it.
 */
import { createPublicKey, verify, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';

type Asn1X509 = typeof import('@peculiar/asn1-x509');
type Asn1Schema = typeof import('@peculiar/asn1-schema');

let parsers: { x509: Asn1X509; schema: Asn1Schema } | undefined;
function asn1() {
  const require = createRequire(import.meta.url);
  parsers ??= { x509: require('@peculiar/asn1-x509') as Asn1X509, schema: require('@peculiar/asn1-schema') as Asn1Schema };
  return parsers;
}

/** One list as read: who issued it, until when it holds, how many certificates it revokes. */
export interface RevocationList {
  /** The issuer's distinguished name, as in the CA certificate's subject (e.g. `CN=Clients CA`). */
  readonly issuer: string;
  /** The CA certificate of the bundle that issued and signed it. */
  readonly ca: X509Certificate;
  readonly nextUpdate: Date | undefined;
  readonly revoked: number;
}

const PEM_BLOCK = (label: string) => new RegExp(`-----BEGIN ${label}-----[^-]+-----END ${label}-----`, 'g');

function pemBlocks(pem: string | Buffer, label: string): Buffer[] {
  return [...pem.toString('latin1').matchAll(PEM_BLOCK(label))].map(([block]) =>
    Buffer.from(block.replace(/-----(BEGIN|END) [^-]+-----/g, '').replace(/\s+/g, ''), 'base64'),
  );
}

/** Short names of the attributes a CA's name usually has, as Node writes a certificate's subject. */
const ATTRIBUTE_NAMES: Readonly<Record<string, string>> = { '2.5.4.3': 'CN', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU' };

function distinguishedName(name: InstanceType<Asn1X509['Name']>): string {
  return name.flatMap((relative) => relative.map((attribute) => `${ATTRIBUTE_NAMES[attribute.type] ?? attribute.type}=${attribute.value.toString()}`)).join(', ');
}

/** Node's hash name for a signature algorithm OID of a CA; undefined for one it cannot check here (RSA-PSS). */
const HASH_OF_SIGNATURE: Readonly<Record<string, string | null>> = {
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.113549.1.1.5': 'sha1',
  '1.3.101.112': null, // Ed25519: no separate hash
  '1.3.101.113': null, // Ed448
};

/** Whether `ca` signed this list; true where the algorithm is one this check does not know (OpenSSL checks it anyway). */
function signedBy(list: InstanceType<Asn1X509['CertificateList']>, ca: X509Certificate): boolean {
  const algorithm = list.signatureAlgorithm.algorithm;
  if (!(algorithm in HASH_OF_SIGNATURE) || list.tbsCertListRaw === undefined) return true;
  const key = createPublicKey(ca.publicKey.export({ type: 'spki', format: 'pem' }));
  return verify(HASH_OF_SIGNATURE[algorithm], Buffer.from(list.tbsCertListRaw), { key, dsaEncoding: 'der' }, Buffer.from(list.signature));
}

/**
 * Reads the lists in `crlPem` against the CA certificates in `caPem`: each list must come from one of those CAs,
 * signed by it, and each CA needs one. Throws an Error naming the part at fault (`names`: the flags or option paths).
 */
export function readRevocationLists(crlPem: string | Buffer, caPem: string | Buffer, names: { clientCrl: string; clientCa: string }): RevocationList[] {
  // The same file contents are checked by every listener at start and looked at again every interval: parsed once.
  const known = typeof crlPem === 'string' ? undefined : checked.get(crlPem);
  if (known && known.caPem === caPem) return known.lists;
  const lists = parseRevocationLists(crlPem, caPem, names);
  if (typeof crlPem !== 'string') checked.set(crlPem, { caPem, lists });
  return lists;
}

/** Lists already read and checked, by the Buffer that held them and the CA bundle they were checked against. */
const checked = new WeakMap<Buffer, { caPem: string | Buffer; lists: RevocationList[] }>();

function parseRevocationLists(crlPem: string | Buffer, caPem: string | Buffer, names: { clientCrl: string; clientCa: string }): RevocationList[] {
  const { x509, schema } = asn1();
  const authorities = pemBlocks(caPem, 'CERTIFICATE').map((der) => ({
    certificate: new X509Certificate(der),
    subject: Buffer.from(schema.AsnConvert.serialize(schema.AsnConvert.parse(der, x509.Certificate).tbsCertificate.subject)),
  }));
  const blocks = pemBlocks(crlPem, 'X509 CRL');
  if (blocks.length === 0) throw new Error(`${names.clientCrl} holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)`);
  const lists = blocks.map((der, index) => {
    let list: InstanceType<Asn1X509['CertificateList']>;
    try {
      list = schema.AsnConvert.parse(der, x509.CertificateList);
    } catch (error) {
      throw new Error(`${names.clientCrl}: revocation list ${index + 1} cannot be read (${(error as Error).message})`, { cause: error });
    }
    const issuerDer = Buffer.from(schema.AsnConvert.serialize(list.tbsCertList.issuer));
    // Two CAs may share a name (an old and a new key while a CA is rotated): the list is the one whose key signed it.
    const named = authorities.filter((candidate) => candidate.subject.equals(issuerDer));
    const issuer = named[0]?.certificate.subject.replace(/\n/g, ', ') ?? distinguishedName(list.tbsCertList.issuer);
    if (named.length === 0) {
      throw new Error(`${names.clientCrl}: the revocation list of '${issuer}' is not from a CA in ${names.clientCa} (${authorities.map((known) => `'${known.certificate.subject.replace(/\n/g, ', ')}'`).join(', ')})`);
    }
    const authority = named.find((candidate) => signedBy(list, candidate.certificate));
    if (!authority) throw new Error(`${names.clientCrl}: the revocation list of '${issuer}' is not signed by that CA's key in ${names.clientCa}`);
    return { issuer, ca: authority.certificate, nextUpdate: list.tbsCertList.nextUpdate?.getTime(), revoked: list.tbsCertList.revokedCertificates?.length ?? 0 };
  });
  const uncovered = authorities.filter((authority) => !lists.some((list) => list.ca === authority.certificate));
  if (uncovered.length > 0) {
    const subjects = uncovered.map((authority) => `'${authority.certificate.subject.replace(/\n/g, ', ')}'`).join(', ');
    throw new Error(`${names.clientCrl} has no revocation list of ${subjects} (${names.clientCa}): OpenSSL would refuse every client certificate ${uncovered.length === 1 ? 'it' : 'they'} signed`);
  }
  return lists;
}

/** What makes OpenSSL refuse every client of a CA although its list was read: the list is past its next update. */
export function revocationListsProblem(lists: readonly RevocationList[], now: Date, name: string): string | undefined {
  const expired = lists.filter((list) => list.nextUpdate !== undefined && list.nextUpdate < now);
  if (expired.length === 0) return undefined;
  const which = expired.map((list) => `'${list.issuer}' (next update was due ${list.nextUpdate!.toISOString()})`).join(', ');
  return `the revocation list in ${name} of ${which} has expired: every client certificate that CA signed is refused until a fresh list is given`;
}
