"""Publishers: put a finished Report where operators look (SSM inventory, the SSM agent's custom
inventory file, CloudWatch, a local HTTP endpoint, a last-report file). See docs/publishing.md."""
from .base import Publisher, PublishResult, build_publishers
from .settings import PublishSettings

__all__ = ["Publisher", "PublishResult", "PublishSettings", "build_publishers"]
