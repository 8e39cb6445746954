"""vpce-doctor: proves from inside a private EC2 instance that its private paths to AWS work."""
__version__ = "0.1.0"
