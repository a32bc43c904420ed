// The OpenSSL functions credagent calls (libcrypto: digests, HMAC, signatures, SCRAM's PBKDF2,
// random bytes; libssl: the TLS client of the proxies and the Redis check), loaded on first use
// (see deferred_library.h). The commands run most often (`health`, `get`, `list`, `--version`)
// hash and encrypt nothing, and loading the two libraries was a sixth of their start-up.
#include "deferred_library.h"

#include "../COpenSSL/shim.h"
#include <stdarg.h>
#include <string.h>

// Both libraries are named by the major version of the headers the build was made with, as is the
// Debian package that holds them.
#define TEXT(value) #value
#define VERSION_TEXT(value) TEXT(value)
static struct deferred_library libssl = {"libssl.so." VERSION_TEXT(OPENSSL_SHLIB_VERSION),
                                         "libssl" VERSION_TEXT(OPENSSL_SHLIB_VERSION)};
static struct deferred_library libcrypto = {"libcrypto.so." VERSION_TEXT(OPENSSL_SHLIB_VERSION),
                                            "libssl" VERSION_TEXT(OPENSSL_SHLIB_VERSION)};

DEFERRED_FUNCTION(libssl, const char *, SSL_CIPHER_get_name, (const SSL_CIPHER *c), (c))
DEFERRED_FUNCTION(libssl, long, SSL_CTX_ctrl, (SSL_CTX *ctx, int cmd, long larg, void *parg),
                  (ctx, cmd, larg, parg))
DEFERRED_FUNCTION(libssl, void, SSL_CTX_free, (SSL_CTX *ctx), (ctx))
DEFERRED_FUNCTION(libssl, int, SSL_CTX_load_verify_locations,
                  (SSL_CTX *ctx, const char *CAfile, const char *CApath),
                  (ctx, CAfile, CApath))
DEFERRED_FUNCTION(libssl, SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *meth), (meth))
DEFERRED_FUNCTION(libssl, int, SSL_CTX_set_default_verify_paths, (SSL_CTX *ctx), (ctx))
DEFERRED_FUNCTION(libssl, void, SSL_CTX_set_verify, (SSL_CTX *ctx, int mode, SSL_verify_cb callback),
                  (ctx, mode, callback))
DEFERRED_FUNCTION(libssl, int, SSL_connect, (SSL *ssl), (ssl))
DEFERRED_FUNCTION(libssl, long, SSL_ctrl, (SSL *ssl, int cmd, long larg, void *parg), (ssl, cmd, larg, parg))
DEFERRED_FUNCTION(libssl, void, SSL_free, (SSL *ssl), (ssl))
DEFERRED_FUNCTION(libssl, const SSL_CIPHER *, SSL_get_current_cipher, (const SSL *s), (s))
DEFERRED_FUNCTION(libssl, int, SSL_get_error, (const SSL *s, int ret_code), (s, ret_code))
DEFERRED_FUNCTION(libssl, long, SSL_get_verify_result, (const SSL *ssl), (ssl))
DEFERRED_FUNCTION(libssl, const char *, SSL_get_version, (const SSL *s), (s))
DEFERRED_FUNCTION(libssl, SSL *, SSL_new, (SSL_CTX *ctx), (ctx))
DEFERRED_FUNCTION(libssl, int, SSL_pending, (const SSL *s), (s))
DEFERRED_FUNCTION(libssl, int, SSL_read_ex, (SSL *ssl, void *buf, size_t num, size_t *readbytes),
                  (ssl, buf, num, readbytes))
DEFERRED_FUNCTION(libssl, int, SSL_set1_host, (SSL *s, const char *hostname), (s, hostname))
DEFERRED_FUNCTION(libssl, void, SSL_set_bio, (SSL *s, BIO *rbio, BIO *wbio), (s, rbio, wbio))
DEFERRED_FUNCTION(libssl, int, SSL_shutdown, (SSL *s), (s))
DEFERRED_FUNCTION(libssl, int, SSL_write_ex, (SSL *s, const void *buf, size_t num, size_t *written),
                  (s, buf, num, written))
DEFERRED_FUNCTION(libssl, const SSL_METHOD *, TLS_client_method, (void), ())

DEFERRED_FUNCTION(libcrypto, long, BIO_ctrl, (BIO *bp, int cmd, long larg, void *parg), (bp, cmd, larg, parg))
DEFERRED_FUNCTION(libcrypto, size_t, BIO_ctrl_pending, (BIO *b), (b))
DEFERRED_FUNCTION(libcrypto, int, BIO_free, (BIO *a), (a))
DEFERRED_FUNCTION(libcrypto, BIO *, BIO_new, (const BIO_METHOD *type), (type))
DEFERRED_FUNCTION(libcrypto, BIO *, BIO_new_mem_buf, (const void *buf, int len), (buf, len))
DEFERRED_FUNCTION(libcrypto, const BIO_METHOD *, BIO_s_mem, (void), ())
DEFERRED_FUNCTION(libcrypto, int, BIO_write, (BIO *b, const void *data, int dlen), (b, data, dlen))
DEFERRED_FUNCTION(libcrypto, int, BN_bn2bin, (const BIGNUM *a, unsigned char *to), (a, to))
DEFERRED_FUNCTION(libcrypto, void, BN_free, (BIGNUM *a), (a))
DEFERRED_FUNCTION(libcrypto, int, BN_num_bits, (const BIGNUM *a), (a))
DEFERRED_FUNCTION(libcrypto, int, CRYPTO_memcmp, (const void *in_a, const void *in_b, size_t len),
                  (in_a, in_b, len))
DEFERRED_FUNCTION(libcrypto, void, ERR_clear_error, (void), ())
DEFERRED_FUNCTION(libcrypto, void, ERR_error_string_n, (unsigned long e, char *buf, size_t len),
                  (e, buf, len))
DEFERRED_FUNCTION(libcrypto, unsigned long, ERR_get_error, (void), ())
DEFERRED_FUNCTION(libcrypto, unsigned long, ERR_peek_last_error, (void), ())
DEFERRED_FUNCTION(libcrypto, const char *, ERR_reason_error_string, (unsigned long e), (e))
DEFERRED_FUNCTION(libcrypto, int, EVP_Digest,
                  (const void *data, size_t count, unsigned char *md, unsigned int *size, const EVP_MD *type,
                   ENGINE *impl),
                  (data, count, md, size, type, impl))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestFinal_ex, (EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s),
                  (ctx, md, s))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestInit_ex, (EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl),
                  (ctx, type, impl))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestSign,
                  (EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen, const unsigned char *tbs,
                   size_t tbslen),
                  (ctx, sigret, siglen, tbs, tbslen))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestSignInit,
                  (EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e, EVP_PKEY *pkey),
                  (ctx, pctx, type, e, pkey))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestUpdate, (EVP_MD_CTX *ctx, const void *d, size_t cnt),
                  (ctx, d, cnt))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestVerify,
                  (EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen, const unsigned char *tbs,
                   size_t tbslen),
                  (ctx, sigret, siglen, tbs, tbslen))
DEFERRED_FUNCTION(libcrypto, int, EVP_DigestVerifyInit,
                  (EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e, EVP_PKEY *pkey),
                  (ctx, pctx, type, e, pkey))
DEFERRED_FUNCTION(libcrypto, void, EVP_MAC_CTX_free, (EVP_MAC_CTX *ctx), (ctx))
DEFERRED_FUNCTION(libcrypto, EVP_MAC_CTX *, EVP_MAC_CTX_new, (EVP_MAC *mac), (mac))
DEFERRED_FUNCTION(libcrypto, EVP_MAC *, EVP_MAC_fetch,
                  (OSSL_LIB_CTX *libctx, const char *algorithm, const char *properties),
                  (libctx, algorithm, properties))
DEFERRED_FUNCTION(libcrypto, int, EVP_MAC_final,
                  (EVP_MAC_CTX *ctx, unsigned char *out, size_t *outl, size_t outsize),
                  (ctx, out, outl, outsize))
DEFERRED_FUNCTION(libcrypto, int, EVP_MAC_init,
                  (EVP_MAC_CTX *ctx, const unsigned char *key, size_t keylen, const OSSL_PARAM params[]),
                  (ctx, key, keylen, params))
DEFERRED_FUNCTION(libcrypto, int, EVP_MAC_update,
                  (EVP_MAC_CTX *ctx, const unsigned char *data, size_t datalen),
                  (ctx, data, datalen))
DEFERRED_FUNCTION(libcrypto, void, EVP_MD_CTX_free, (EVP_MD_CTX *ctx), (ctx))
DEFERRED_FUNCTION(libcrypto, EVP_MD_CTX *, EVP_MD_CTX_new, (void), ())
DEFERRED_FUNCTION(libcrypto, EVP_MD *, EVP_MD_fetch,
                  (OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties),
                  (ctx, algorithm, properties))
DEFERRED_FUNCTION(libcrypto, void, EVP_MD_free, (EVP_MD *md), (md))
DEFERRED_FUNCTION(libcrypto, void, EVP_PKEY_free, (EVP_PKEY *pkey), (pkey))
DEFERRED_FUNCTION(libcrypto, int, EVP_PKEY_get_base_id, (const EVP_PKEY *pkey), (pkey))
DEFERRED_FUNCTION(libcrypto, int, EVP_PKEY_get_bn_param,
                  (const EVP_PKEY *pkey, const char *key_name, BIGNUM **bn),
                  (pkey, key_name, bn))
DEFERRED_FUNCTION(libcrypto, const EVP_MD *, EVP_sha256, (void), ())
DEFERRED_FUNCTION(libcrypto, OSSL_PARAM, OSSL_PARAM_construct_end, (void), ())
DEFERRED_FUNCTION(libcrypto, OSSL_PARAM, OSSL_PARAM_construct_utf8_string,
                  (const char *key, char *buf, size_t bsize),
                  (key, buf, bsize))
DEFERRED_FUNCTION(libcrypto, EVP_PKEY *, PEM_read_bio_PrivateKey,
                  (BIO *out, EVP_PKEY **x, pem_password_cb *cb, void *u),
                  (out, x, cb, u))
DEFERRED_FUNCTION(libcrypto, int, PEM_write_bio_PrivateKey,
                  (BIO *out, const EVP_PKEY *x, const EVP_CIPHER *enc, const unsigned char *kstr, int klen,
                   pem_password_cb *cb, void *u),
                  (out, x, enc, kstr, klen, cb, u))
DEFERRED_FUNCTION(libcrypto, int, PKCS5_PBKDF2_HMAC,
                  (const char *pass, int passlen, const unsigned char *salt, int saltlen, int iter,
                   const EVP_MD *digest, int keylen, unsigned char *out),
                  (pass, passlen, salt, saltlen, iter, digest, keylen, out))
DEFERRED_FUNCTION(libcrypto, int, RAND_bytes, (unsigned char *buf, int num), (buf, num))
DEFERRED_FUNCTION(libcrypto, const char *, X509_verify_cert_error_string, (long n), (n))

typedef EVP_PKEY *(*keygen_call)(OSSL_LIB_CTX *, const char *, const char *, ...);

// What follows `type` depends on it (EVP_PKEY_Q_keygen(3)): the key size in bits for "RSA", the
// curve's name for "EC", nothing for the other types.
EVP_PKEY *EVP_PKEY_Q_keygen(OSSL_LIB_CTX *libctx, const char *propq, const char *type, ...) {
    static _Atomic(void *) address;
    keygen_call keygen = (keygen_call)deferred_function(&libcrypto, "EVP_PKEY_Q_keygen", &address);
    va_list arguments;
    va_start(arguments, type);
    EVP_PKEY *key;
    if (strcmp(type, "RSA") == 0) {
        key = keygen(libctx, propq, type, va_arg(arguments, size_t));
    } else if (strcmp(type, "EC") == 0) {
        key = keygen(libctx, propq, type, va_arg(arguments, const char *));
    } else {
        key = keygen(libctx, propq, type);
    }
    va_end(arguments);
    return key;
}
