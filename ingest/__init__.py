"""postdesk's ingest stage: raw RFC 822 bytes in, a frozen `ParsedMail` out. No tickets, no SQL.

Follows RFC 5322 (format), 2045-2047 and 2231 (MIME, encoded words and parameters), 2183 (disposition),
3464 (delivery status notifications), 3676 (format=flowed) and 3834 (auto-submitted mail); Outlook .msg files
after MS-OXMSG.
"""
from .model import Address, Attachment, Bounce, ParsedMail, error_json
from .parse import DEFAULT_LIMITS, NotAMessage, ParseLimits, parse_message

__all__ = ['Address', 'Attachment', 'Bounce', 'ParsedMail', 'error_json', 'DEFAULT_LIMITS', 'NotAMessage',
           'ParseLimits', 'parse_message']
