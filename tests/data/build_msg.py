"""Writes the small Outlook .msg fixtures next to this file (MS-CFB version 3 compound files holding MS-OXMSG
storages), so that the tests of ingest.outlook read files whose every property is known:

    python tests/data/build_msg.py

`outlook-mapi-only.msg`: no transport headers, so the headers come from MAPI properties; a plain and an HTML
body (code page 1252), two recipients (To, Cc), a PDF attachment, an inline image with a Content-ID and an
embedded message with its own attachment. `outlook-transport-headers.msg`: the transport headers Outlook keeps,
with a Unicode body and no attachment.
"""
from __future__ import annotations

import pathlib
import struct

SECTOR = 512
MINI = 64
CUTOFF = 4096
FREE, END, FAT_SECTOR = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
NO_STREAM = 0xFFFFFFFF


def unicode(prop_id: int, text: str) -> tuple[str, bytes]:
    return '__substg1.0_%04X001F' % prop_id, text.encode('utf-16-le')


def binary(prop_id: int, data: bytes) -> tuple[str, bytes]:
    return '__substg1.0_%04X0102' % prop_id, data


def properties(header_size: int, fixed: dict, variable: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A property stream: the header, then one 16-byte entry per property (fixed values inline)."""
    out = bytearray(header_size)
    for (prop_id, kind), value in fixed.items():
        out += struct.pack('<II', (prop_id << 16) | kind, 6) + value.ljust(8, b'\0')
    for name, data in variable:
        prop_id, kind = int(name[12:16], 16), int(name[16:20], 16)
        size = len(data) + (2 if kind == 0x001F else 0)
        out += struct.pack('<IIII', (prop_id << 16) | kind, 6, size, 0)
    return '__properties_version1.0', bytes(out)


def long(value: int) -> bytes:
    return struct.pack('<I', value)


def systime(year, month, day, hour, minute) -> bytes:
    import datetime
    delta = datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.timezone.utc) - \
        datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
    return struct.pack('<Q', (delta.days * 86400 + delta.seconds) * 10_000_000)


def storage_of(header_size: int, fixed: dict, variable: list, children: dict | None = None) -> dict:
    tree = dict(variable)
    name, data = properties(header_size, fixed, variable)
    tree[name] = data
    tree.update(children or {})
    return tree


def recipient(kind: int, name: str, address: str) -> dict:
    return storage_of(8, {(0x0C15, 0x0003): long(kind)},
                      [unicode(0x3001, name), unicode(0x39FE, address), unicode(0x3003, address)])


def attachment(filename: str, mime: str, data: bytes, content_id: str = '') -> dict:
    variable = [unicode(0x3707, filename), unicode(0x3704, filename[:12]), unicode(0x370E, mime),
                binary(0x3701, data)]
    if content_id:
        variable.append(unicode(0x3712, content_id))
    return storage_of(8, {(0x3705, 0x0003): long(1)}, variable)


PNG = bytes.fromhex('89504e470d0a1a0a0000000d4948445200000001000000010806000000'
                    '1f15c4890000000d49444154789c6364f8cf50070003860180ec347d6b0000000049454e44ae426082')


def mapi_only_message() -> dict:
    inner = storage_of(24, {(0x0039, 0x0040): systime(2025, 6, 2, 8, 30)}, [
        unicode(0x0037, 'Original order confirmation'), unicode(0x0C1A, 'Shop'),
        unicode(0x5D01, 'orders@shop.example'), unicode(0x1000, 'Order 4711 confirmed.\r\n'),
        unicode(0x1035, '<order-4711@shop.example>')],
        {'__recip_version1.0_#00000000': recipient(1, 'Jürgen Müller', 'juergen@customer.example'),
         '__attach_version1.0_#00000000': attachment('receipt.txt', 'text/plain', b'Receipt 4711\r\n')})
    embedded = storage_of(8, {(0x3705, 0x0003): long(5)}, [unicode(0x3001, 'Original order confirmation')],
                          {'__substg1.0_3701000D': inner})
    html = ('<html><head><style>p{color:red}</style></head><body><p>Gr\xfc\xdfe, my order <b>4711</b> has not '
            'arrived.</p><img src="cid:image001.png@01D9A1B2.C3D4E5F0"><script>alert(1)</script></body></html>'
            ).encode('cp1252')
    return storage_of(32, {(0x0039, 0x0040): systime(2025, 6, 3, 10, 4), (0x3FDE, 0x0003): long(1252)}, [
        unicode(0x001A, 'IPM.Note'), unicode(0x0037, 'Wo bleibt meine Bestellung?'),
        unicode(0x0C1A, 'Jürgen Müller'), unicode(0x0C1E, 'EX'),
        unicode(0x0C1F, '/O=EXCHANGE/OU=FIRST/CN=RECIPIENTS/CN=JUERGEN'), unicode(0x5D01, 'juergen@customer.example'),
        unicode(0x1000, 'Grüße, my order 4711 has not arrived.\r\n'), binary(0x1013, html),
        unicode(0x1035, '<q-4711@customer.example>'), unicode(0x1042, '<a-1@helpdesk.example>')], {
        '__recip_version1.0_#00000000': recipient(1, 'Support', 'support@helpdesk.example'),
        '__recip_version1.0_#00000001': recipient(2, 'Anna Schmidt', 'anna@customer.example'),
        '__attach_version1.0_#00000000': attachment('Rechnung März.pdf', 'application/pdf', b'%PDF-1.4\n%test\n'),
        '__attach_version1.0_#00000001': attachment('image001.png', 'image/png', PNG,
                                                    'image001.png@01D9A1B2.C3D4E5F0'),
        '__attach_version1.0_#00000002': embedded})


TRANSPORT = ('Received: from mx.customer.example by mx.helpdesk.example; Tue, 3 Jun 2025 10:04:06 +0200\r\n'
             'From: =?utf-8?q?Ann_K=C3=B6hler?= <ann@customer.example>\r\n'
             'To: Support <support@helpdesk.example>\r\n'
             'Subject: Question about invoice 17\r\n'
             'Date: Tue, 3 Jun 2025 10:04:05 +0200\r\n'
             'Message-ID: <invoice-17@customer.example>\r\n'
             'MIME-Version: 1.0\r\n'
             'Content-Type: multipart/alternative;\r\n\tboundary="----=_NextPart_000_0001"\r\n'
             'X-Mailer: Microsoft Outlook 16.0\r\n\r\n')


def transport_headers_message() -> dict:
    return storage_of(32, {}, [unicode(0x007D, TRANSPORT), unicode(0x0037, 'not used: the headers win'),
                               unicode(0x1000, 'Hello, 日本 and Köln: where is invoice 17?\r\n')])


# ------------------------------------------------------------------------------------------ MS-CFB writer

def compound_file(tree: dict) -> bytes:
    entries = []                       # [name, type, child, left, right, start, size, data]

    def add(name, kind, data=b''):
        entries.append([name, kind, NO_STREAM, NO_STREAM, NO_STREAM, END, len(data), data])
        return len(entries) - 1

    def add_storage(index, children: dict):
        ids = []
        for name in sorted(children, key=lambda n: (len(n), n.upper())):
            value = children[name]
            if isinstance(value, dict):
                child = add(name, 1)
                add_storage(child, value)
            else:
                child = add(name, 2, value)
            ids.append(child)
        if ids:                        # a right-leaning chain: a valid (if unbalanced) binary search tree
            entries[index][2] = ids[0]
            for a, b in zip(ids, ids[1:]):
                entries[a][4] = b

    root = add('Root Entry', 5)
    add_storage(root, tree)
    sectors: list[bytes] = []
    fat: list[int] = []

    def allocate(data: bytes) -> int:
        count = max(1, -(-len(data) // SECTOR))
        start = len(sectors)
        for i in range(count):
            sectors.append(data[i * SECTOR:(i + 1) * SECTOR].ljust(SECTOR, b'\0'))
            fat.append(start + i + 1 if i + 1 < count else END)
        return start

    mini, minifat = bytearray(), []
    for entry in entries[1:]:
        if entry[1] != 2:
            continue
        data = entry[7]
        if len(data) >= CUTOFF:
            entry[5] = allocate(data)
        elif data:
            start = len(mini) // MINI
            count = -(-len(data) // MINI)
            mini += data.ljust(count * MINI, b'\0')
            minifat += [start + i + 1 if i + 1 < count else END for i in range(count)]
            entry[5] = start
        else:
            entry[5] = END
    entries[root][5] = allocate(bytes(mini)) if mini else END
    entries[root][6] = len(mini)
    minifat_start = allocate(b''.join(struct.pack('<I', v) for v in minifat)) if minifat else END
    minifat_sectors = -(-len(minifat) * 4 // SECTOR) if minifat else 0
    directory = b''.join(_directory_entry(e) for e in entries)
    directory_start = allocate(directory.ljust(-(-len(directory) // SECTOR) * SECTOR, b'\0'))
    fat_count = 1
    while (len(sectors) + fat_count) > fat_count * (SECTOR // 4):
        fat_count += 1
    fat_start = len(sectors)
    fat += [FAT_SECTOR] * fat_count
    fat += [FREE] * (fat_count * (SECTOR // 4) - len(fat))
    fat_bytes = b''.join(struct.pack('<I', v) for v in fat)
    for i in range(fat_count):
        sectors.append(fat_bytes[i * SECTOR:(i + 1) * SECTOR])
    difat = [fat_start + i for i in range(fat_count)] + [FREE] * (109 - fat_count)
    header = (b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\0' * 16 + struct.pack('<HHHHH', 0x3E, 3, 0xFFFE, 9, 6)
              + b'\0' * 6 + struct.pack('<IIIIIIIII', 0, fat_count, directory_start, 0, CUTOFF, minifat_start,
                                        minifat_sectors, END, 0)
              + b''.join(struct.pack('<I', v) for v in difat))
    return header + b''.join(sectors)


def _directory_entry(entry) -> bytes:
    name, kind, child, left, right, start, size, _ = entry
    encoded = (name + '\0').encode('utf-16-le')
    return (encoded.ljust(64, b'\0') + struct.pack('<HBB', len(encoded), kind, 1)
            + struct.pack('<III', left, right, child) + b'\0' * 16 + b'\0' * 4 + b'\0' * 16
            + struct.pack('<IQ', start, size))


def main() -> None:
    here = pathlib.Path(__file__).resolve().parent
    (here / 'outlook-mapi-only.msg').write_bytes(compound_file(mapi_only_message()))
    (here / 'outlook-transport-headers.msg').write_bytes(compound_file(transport_headers_message()))


if __name__ == '__main__':
    main()
