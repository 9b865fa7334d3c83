"""The medical-insurance e-certificate: binding, the dynamic QR code, face check, visits."""
