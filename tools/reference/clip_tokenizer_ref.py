"""Reference CLIP tokenizer: OpenAI's clip/simple_tokenizer.py, written out again from its
algorithm, with ftfy.fix_text taken as the identity. It writes the extra test cases for
src/models/clip/tokenizer.ts.

    python3 tools/reference/clip_tokenizer_ref.py check      # must reproduce every golden
    python3 tools/reference/clip_tokenizer_ref.py generate   # writes extra-cases.json

Both read test/fixtures/clip-tokenizer/. Needs the `regex` module, as the original does
(pip install regex, or Debian's python3-regex): stdlib `re` has no \\p{L}/\\p{N}, and
emulating them would make this reference share assumptions with the port it checks.

The vocabulary is built the way the original builds it (256 byte symbols, the same with </w>,
merge results, <|startoftext|>, <|endoftext|>) from merges.txt, and checked against vocab.json.
One deviation, mirrored from the TypeScript port: the original raises on lone surrogates
(str.encode('utf-8')); here each is encoded as U+FFFD. Cases that rely on it say so in `note`.
"""
import codecs
import html
import json
import os
import random
import sys
import unicodedata

import regex as re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FIXTURES = os.path.join(ROOT, 'test', 'fixtures', 'clip-tokenizer')

# UTF-8 encode error handlers may only return ASCII text, hence bytes.
codecs.register_error('clip_fffd', lambda e: ('\ufffd'.encode('utf-8') * (e.end - e.start), e.end))


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return {(a, b) for a, b in zip(word, word[1:])}


def basic_clean(text):
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text):
    text = re.sub(r'\s+', ' ', text)
    return text.strip()


class SimpleTokenizer:
    def __init__(self, folder):
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with open(os.path.join(folder, 'merges.txt'), encoding='utf-8') as f:
            merges = f.read().split('\n')
        merges = merges[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + '</w>' for v in vocab]
        for m in merges:
            vocab.append(''.join(m))
        vocab.extend(['<|startoftext|>', '<|endoftext|>'])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        with open(os.path.join(folder, 'vocab.json'), encoding='utf-8') as f:
            if json.load(f) != self.encoder:
                raise SystemExit('vocab.json differs from the vocabulary built from merges.txt')
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {'<|startoftext|>': '<|startoftext|>', '<|endoftext|>': '<|endoftext|>'}
        self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        pairs = get_pairs(word)
        if not pairs:
            return token + '</w>'
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float('inf')))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = ' '.join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        bpe_tokens = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in re.findall(self.pat, text):
            token = ''.join(self.byte_encoder[b] for b in token.encode('utf-8', errors='clip_fffd'))
            bpe_tokens.extend(self.encoder[t] for t in self.bpe(token).split(' '))
        return bpe_tokens

    def decode(self, tokens):
        text = ''.join(self.decoder[t] for t in tokens)
        return bytearray([self.byte_decoder[c] for c in text]).decode('utf-8', errors='replace').replace('</w>', ' ')

    def tokenize77(self, text, context_length=77):
        """clip.tokenize(text, truncate=True) for one text, as lists."""
        tokens = [self.encoder['<|startoftext|>']] + self.encode(text) + [self.encoder['<|endoftext|>']]
        truncated = len(tokens) > context_length
        if truncated:
            tokens = tokens[:context_length]
            tokens[-1] = self.encoder['<|endoftext|>']
        ids = tokens + [0] * (context_length - len(tokens))
        mask = [1] * len(tokens) + [0] * (context_length - len(tokens))
        return ids, mask, truncated


LONG_CAPTION = ('A breathtaking panoramic view of the ancient stone bridge crossing the misty river at dawn, '
                'with golden sunlight filtering through the autumn trees, reflections shimmering on the calm water, '
                'a lone fisherman in a small wooden boat, distant mountains fading into a soft blue haze, '
                'and flocks of birds flying over the old village rooftops near the cathedral.')

EXTRA_TEXTS = [
    # HTML entities: named with and without ';', longest legacy prefix, double escaping, numeric
    ('Tom &amp Jerry &lt;3 &gt', None),
    ('&amp;amp; &amp;lt;b&amp;gt; &amp;amp;amp;', None),
    ('&notin; &notit; &not &noti &ampfoo &AElig &aelig; &Aacute;rbol', None),
    ('&nbsp;spaced&nbsp;out&nbsp;', None),
    ('&#128; &#x80; &#150;dash&#151; &#x9D; &#129;', None),
    ('&#x1F600; &#128512; &#X1f355; pizza', None),
    ('&#0; &#x0; &#13; &#1; &#x7f; &#xfffe; &#xD800; &#x110000; &#99999999999999999999;', None),
    ('&#65&#66;&#x43 &#0000000072;ello', None),
    ('&unknown; & ; &; &#; &#x; a&b &&amp;', None),
    ('&ThisIsAVeryLongEntityNameThatGoesOnForeverAndEver; &amp', None),
    ('&quot;quoted&quot; &apos;single&apos; &#39;it&#39;s&#39;', None),
    ('&NotNestedGreaterGreater; &nGt; &bne; &fjlig;', None),
    # emoji, CJK, other scripts
    ('👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽 thumbs', None),
    ('😀😃😄😁😆😅🤣😂 laughing', None),
    ('北京欢迎你 中文字幕 日本語のテキスト 한국어 문장', None),
    ('مرحبا بالعالم صورة جميلة', None),
    ('שלום עולם', None),
    ('Привет, мир! Фото кошки.', None),
    ('नमस्ते दुनिया ၁၂၃ ٣٤٥ ۶۷ १२३', None),
    ('ΟΔΟΣ ΣΟΦΙΑ Σίσυφος ΑΣ.', None),
    # combining marks, casing, ligatures
    ('cafe\u0301 na\u0308ive e\u0300\u0301\u0302 Z\u0351\u0352alg\u0353o', None),
    ('\u03b1\u0345 \u1fb3 \u0345alone', None),
    ('İSTANBUL İzmir DİYARBAKIR ıi', None),
    ('Straße STRASSE ẞ groß', None),
    ('ﬁne ﬂow ﬀ ﬃ ﬅ ǅ ǈ ǋ', None),
    ('ⅠⅡⅢ Ⅻ ① ⑳ ½ ¼ ² ³ x²', None),
    ('０１２３ ＡＢＣ ｆｕｌｌｗｉｄｔｈ', None),
    # apostrophes and contractions
    ("IT'S THE DOG'S BONE, ISN'T IT? WE'RE, YOU'VE, I'M, WE'LL, HE'D", None),
    ("it'ſ ſtar <|ſtartoftext|> o'clock rock'n'roll ''s", None),
    ('it\u2019s the dog\u2019s bone', None),
    ('<|startoftext|>hello<|endoftext|> <|ENDOFTEXT|> <|endoftext|', None),
    # whitespace: tabs, newlines, NBSP, line/paragraph separators, Python-only strip characters
    ('tab\there\nnewline\r\ncrlf\u00a0nbsp\u2028ls\u2029ps\u3000ideo', None),
    ('\u000b\u000c\u001c\u001d lead and trail \u001e\u001f\u0085', None),
    ('a\u001cb\u001dc\u0085d\ufeffe\u200bf\u180eg', None),
    ('\ufeffbom at start', None),
    ('   \t\n   ', None),
    ('\u00a0&nbsp;\u00a0', None),
    # control characters and odd code points
    ('ctrl\u0000null\u0001soh\u007fdel\u009fapc', None),
    ('\u00ad soft\u00adhyphen \u200d zwj \ufffd replacement \U0010ffff \U000e0001', None),
    ('lone \ud800 high \udfff low \udbff\udbff pair-of-highs', 'lone surrogates: the original raises, the port encodes U+FFFD'),
    # digits, numbers, punctuation runs
    ('3.14159 1,000,000 -42 +7 1e10 0x1F 2024-01-31 12:30:45', None),
    ('!!!??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}', None),
    ('"quotes" «guillemets» „low“ ‚single‘ ‹angle›', None),
    # URLs and alt-text junk
    ('https://www.example.com/path/to/image_01.jpg?size=large&amp;format=webp#frag', None),
    ('IMG_1234.JPG DSC00042.jpeg Screenshot 2023-11-05 at 10.42.13 PM.png', None),
    ('stock-photo-beautiful-sunset-over-the-ocean-123456789.jpg', None),
    ('<img src="cat.png" alt="A cat"> <b>bold</b> &lt;i&gt;italic&lt;/i&gt;', None),
    ('user@example.com #hashtag @mention $AAPL 100% C++ C# .NET', None),
    # repeated symbols (BPE passes with overlapping pairs)
    ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', None),
    ('abababababababababababab ababab', None),
    ('zzzzzzzzzzzzzzzzzzzzzzzzzz hmmmmmmmmmmmmm noooooooooooooooooo', None),
    ('supercalifragilisticexpialidocious antidisestablishmentarianism', None),
    ('</w> a</w>b <w>', None),
    # long captions (> 77 tokens, truncation keeps eot last)
    (LONG_CAPTION, None),
    (LONG_CAPTION + ' ' + LONG_CAPTION, None),
    (' '.join(str(i) for i in range(200)), None),
    ('🍕' * 100, None),
    ('word ' * 75, None),
    ('word ' * 76, None),
]

# ids → text, including byte sequences that are not valid UTF-8 on their own.
DECODE_ID_CASES = [
    [1, 2, 3],
    [127, 119],
    [127, 119, 75, 2368],
    [158, 97, 104],
    [158],
    [49406, 320, 2368, 49407],
    [256, 257, 258, 511],
]

# Byte strings as single-byte tokens: cut sequences, overlong forms, surrogates, a BOM.
DECODE_BYTE_CASES = [
    b'\xe2\x82', b'\xe2\x82\xac', b'a\xf0\x9f\x98b', b'\xed\xa0\x80', b'\xc0\xaf', b'\xf4\x90\x80\x80',
    b'\xff\xfe', b'\xef\xbb\xbfbom', b'\x80\x80x', b'\xf0\x9f\x98\x80\xf0\x9f',
]


RANDOM_PIECES = [
    '&amp;', '&amp', '&lt', '&notin', '&#', '&#x', ';', '&', '#', 'x', '1', '9', 'F', "'", "'s", "'S", "'ll", '\u017f',
    '\u0130', '\u00df', '\u03a3', '\u03c3', '\ufb01', ' ', '  ', '\t', '\n', '\x1c', '\x85', '\xa0', '\ufeff', '\u2028',
    '\u200b', '\u0345', '\u0301', 'a', 'b', 'ab', 'the', 'cat', 'photo', '\U0001f600', '\u200d', '\u4e2d', '\u0639',
    '\u0939', '\u0967', '\u2160', '\u00bd', '<|endoftext|>', '<|startoftext|>', '<|', '|>', '</w>', '.', '-', '_', '"',
    '\x00', '\x7f', '\u00c9',
]


def random_texts(count, seed):
    """Seeded mixes of the pieces above, random code points and numeric references. Code points
    unassigned in this Python's Unicode tables are skipped: a newer Unicode may give them a
    lowercase form, and then the answer depends on the Python version."""
    rnd = random.Random(seed)

    def code_point():
        while True:
            c = chr(rnd.randrange(0x110000) if rnd.random() < 0.3 else rnd.randrange(0x3000))
            if unicodedata.category(c) not in ('Cn', 'Cs'):
                return c

    def piece():
        r = rnd.random()
        if r < 0.7:
            return rnd.choice(RANDOM_PIECES)
        if r < 0.85:
            return code_point()
        c = code_point()
        return '&#%d;' % ord(c) if rnd.random() < 0.5 else '&#x%x' % ord(c)

    return [''.join(piece() for _ in range(rnd.randrange(1, 30))) for _ in range(count)]


def case(tok, text, note):
    ids = tok.encode(text)
    ids77, mask77, truncated = tok.tokenize77(text)
    out = {'text': text, 'ids': ids, 'input_ids_77': ids77, 'attention_mask_77': mask77, 'truncated': truncated,
           'decoded': tok.decode(ids)}
    if note:
        out['note'] = note
    return out


def check(tok):
    with open(os.path.join(FIXTURES, 'goldens.json'), encoding='utf-8') as f:
        goldens = json.load(f)
    bad = 0
    for c in goldens['cases']:
        ids77, mask77, _ = tok.tokenize77(c['text'], goldens['context_length'])
        got = {'ids': tok.encode(c['text']), 'input_ids_77': ids77, 'attention_mask_77': mask77, 'decoded': tok.decode(tok.encode(c['text']))}
        for k, v in got.items():
            if c[k] != v:
                bad += 1
                print('MISMATCH %r %s: %r != %r' % (c['text'], k, v, c[k]))
    print('%d goldens, %d mismatches' % (len(goldens['cases']), bad))
    return bad == 0


def generate(tok):
    byte_ids = [[tok.encoder[tok.byte_encoder[b]] for b in bs] for bs in DECODE_BYTE_CASES]
    cases = [case(tok, text, note) for text, note in EXTRA_TEXTS]
    cases += [case(tok, text, 'seeded random mix') for text in random_texts(80, 20240601)]
    out = {
        'reference': 'tools/reference/clip_tokenizer_ref.py (OpenAI simple_tokenizer rewritten, ftfy as identity)',
        'python': '%d.%d.%d' % sys.version_info[:3],
        'regex': re.__version__,
        'unicodedata': unicodedata.unidata_version,
        'sot': tok.encoder['<|startoftext|>'],
        'eot': tok.encoder['<|endoftext|>'],
        'context_length': 77,
        'padding': 'input_ids_77 pads with 0 as clip.tokenize does; compare ids only where attention_mask_77 is 1',
        'cases': cases,
        'decode_cases': [{'ids': ids, 'decoded': tok.decode(ids)} for ids in DECODE_ID_CASES + byte_ids],
    }
    path = os.path.join(FIXTURES, 'extra-cases.json')
    with open(path, 'w', encoding='ascii', newline='\n') as f:
        # One case per line keeps the file small and its diffs readable.
        head = {k: v for k, v in out.items() if k not in ('cases', 'decode_cases')}
        f.write(json.dumps(head, ensure_ascii=True, indent=1)[:-2] + ',\n')
        for key in ('cases', 'decode_cases'):
            rows = ',\n'.join('  ' + json.dumps(c, ensure_ascii=True) for c in out[key])
            f.write(' %s: [\n%s\n ]%s\n' % (json.dumps(key), rows, ',' if key == 'cases' else ''))
        f.write('}\n')
    print('wrote %s: %d cases, %d decode cases' % (os.path.relpath(path, ROOT), len(cases), len(out['decode_cases'])))


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ('check', 'generate'):
        raise SystemExit(__doc__)
    tok = SimpleTokenizer(FIXTURES)
    ok = check(tok)
    if not ok:
        raise SystemExit(1)
    if sys.argv[1] == 'generate':
        generate(tok)


if __name__ == '__main__':
    main()
