"""Cryptographic transforms, PRFs, key derivations and key exchanges.

Everything here is built on the ``cryptography`` package; nothing is hand-rolled
except the protocol-defined compositions (prf+, AES-XCBC from AES-ECB, key
derivation formulas).
"""
