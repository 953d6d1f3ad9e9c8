"""
L{contextFromPEM}: a server TLS context from a PEM chain and its key, as
auth stores certificates and the gateway serves them.
"""

from OpenSSL import SSL, crypto


def contextFromPEM(pem):
    """
    A server L{SSL.Context} with the chain and key in C{pem}.

    @raise ValueError: when C{pem} holds no certificate or no matching key.
    """
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, pem)
        blocks = [b"-----BEGIN CERTIFICATE-----" + part for part in pem.split(b"-----BEGIN CERTIFICATE-----")[1:]]
        chain = [crypto.load_certificate(crypto.FILETYPE_PEM, block) for block in blocks]
    except crypto.Error as e:
        raise ValueError(f"not a PEM certificate and key: {e}") from None
    if not chain:
        raise ValueError("no certificate in the PEM")
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_privatekey(key)
    context.use_certificate(chain[0])
    for extra in chain[1:]:
        context.add_extra_chain_cert(extra)
    try:
        context.check_privatekey()
    except SSL.Error:
        raise ValueError("the private key does not match the certificate") from None
    return context
