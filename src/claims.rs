//! Recognises "JP" ("j'prends", French for "I'll take it") claims in live chat comments, so a
//! seller gets the item, variant and quantity each viewer claimed without reading the chat by hand.
//!
//! # Grammar
//!
//! A comment is a claim when, after leading emoji, symbols, punctuation and spaces, it starts with
//! a claim keyword. Everything is compared on a *normalised* copy of the comment: NFKD, combining
//! marks dropped (so accents don't matter), lowercased, typographic apostrophes (’ ‘ \` ´ ʼ) read
//! as `'`, `×`/`✖` read as `x`, `º` read as `°` and `№` read as `#`.
//!
//! * **Keyword** (built-in): `jp`, `jprends`, `j'prends`, `j' prends`, `j prends`, `je prends`,
//!   `jeprends`, each also without the final `s`. It must be the first word of the comment (so
//!   "moi jp", "ajp" and "ok jp 12" are *not* claims: mid-sentence "jp" is too often chatter) and
//!   must not be followed by a letter ("jpp", "jpeg", "jpg", "jpeux" are not claims); a digit or
//!   `#` may follow directly ("jp12"). [`ClaimParser::with_keyword_pattern`] replaces this part
//!   only.
//! * **Negation**: a keyword directly followed by `pas`, `plus`, `rien` or `jamais` ("je prends
//!   pas", "j'prends plus") is *not* a claim.
//! * Then, each optional and separated by anything that is not a letter or digit (spaces, commas,
//!   dashes, colons, emoji…): an **item**, then a **variant** and a **quantity** in either order.
//!   Parsing stops at the first word it does not recognise; the rest ("svp merci ❤️") is ignored
//!   and does not prevent the claim.
//! * **Item**: a code of 0–3 letters followed by 1–6 digits (`12`, `A12`, `abc123`), optionally
//!   after `#`, `n°`, `no`, `num`, `numéro`, `ref`/`réf`, `article`, `item`, `code`… as a separate
//!   word, and optionally after a filler article (`le`, `la`, `les`, `the`: "je prends le 12";
//!   one-letter elisions such as `l'` or `d'` are always skipped). `4x2` / `a12x3` is an item glued
//!   to a quantity. Output: letters uppercased, digits as typed (`#12` → `12`, `a12` → `A12`, `012`
//!   → `012`). Letters glued to the digits stay part of the code (`ref12` → `REF12`), except `t38`
//!   (a size) and `x2` (a quantity). The item must come first: "jp M 12" gives variant `M`, no
//!   item.
//! * **Variant**, one of:
//!   - a letter size `XXS XS S M L XL XXL XXXL XXXXL 2XS 3XS 2XL`…`6XL`, output uppercased;
//!   - `taille`/`size`/`t` followed by a number of up to 3 digits (`taille 38`, `t38`, `T 38`,
//!     `size 40`), output as the bare number (`"38"`), or by a letter size (`size m` → `M`);
//!     `taille unique` → `TU`;
//!   - a colour word (`rouge`, `noire`, `bleu`, `black`…), optionally followed by a shade (`bleu
//!     marine`, `vert kaki`, `gris clair`), output lowercased and accent-stripped as typed
//!     (`Rouge` → `rouge`, `Doré` → `dore`);
//!   - otherwise, only directly after an item, one free word of 2–15 letters that is not a common
//!     chat word, when nothing but a quantity and common chat words ("svp", "merci", "trop beau")
//!     follows it: "jp 12 fleuri" → `fleuri`, but "jp 12 robe fleurie" → no variant.
//!
//!   The variant may be preceded by `en` ("je prends le 12 en M"). A bare second number
//!   ("jp 12 38") is not read as a size.
//! * **Quantity**: `x2`, `x 2`, `×2`, `2x`, `qty 2`, `qté 2`, `quantité 2`, `2 pièces`, `2 pcs`,
//!   `2 fois`…, and `2 x` once an item was read (so "jp 12 x" is item 12). Valid quantities are
//!   1..=999; `x0` or `x5000` are recognised but leave the quantity at its default of 1 (the claim
//!   is kept: `raw` shows what was typed).

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};
use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// One claim read from a chat comment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Claim {
    /// Item code: letters uppercased, `#` and prefix words stripped ("12", "A12").
    pub item: Option<String>,
    /// Size (uppercased, "M", "XL"; numbered sizes as the bare number, "38") or colour/word
    /// (lowercased, accent-stripped, "rouge", "bleu marine").
    pub variant: Option<String>,
    /// 1..=999, 1 when none (or an out-of-range one) was typed.
    pub quantity: u32,
    /// The original comment text, unchanged.
    pub raw: String,
}

/// A `--claim-pattern` that is not a valid regex.
#[derive(Debug, thiserror::Error)]
pub enum ClaimPatternError {
    #[error("invalid --claim-pattern {pattern:?}: {source}")]
    Invalid {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// Parses chat comments into [`Claim`]s. Cheap to clone and shareable across threads.
#[derive(Debug, Clone)]
pub struct ClaimParser {
    /// `^(KEYWORD)(?:$|[^\p{Alphabetic}])`, case-insensitive; group 1 is the keyword.
    keyword: Regex,
    /// The built-in keyword always starts with `j`, which allows a prefilter on the raw bytes.
    builtin: bool,
}

const BUILTIN_KEYWORD: &str = r"jp|j(?:'|e)?\s*prends?";

impl Default for ClaimParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimParser {
    /// The default grammar, keyword `jp` / `j'prends` / `je prends` … (see the module docs).
    pub fn new() -> Self {
        Self {
            keyword: compile_keyword(BUILTIN_KEYWORD).expect("built-in claim keyword regex"),
            builtin: true,
        }
    }

    /// Replace the keyword part (JP / j'prends / ...) with a user regex; the rest of the grammar
    /// (item, variant, quantity) still applies after the match. Matched case-insensitively against
    /// the normalised text.
    ///
    /// The pattern is anchored at the start of the comment (after leading emoji, symbols and
    /// punctuation) and its match must be followed by the end of the text or a non-letter, as for
    /// the built-in keyword, so the pattern should not include trailing spaces. Accents and
    /// typographic apostrophes in the pattern are normalised like the text (`réf` matches "REF" and
    /// "réf"). A match of zero length never counts as a claim.
    pub fn with_keyword_pattern(pattern: &str) -> Result<Self, ClaimPatternError> {
        let invalid = |source| ClaimPatternError::Invalid {
            pattern: pattern.to_owned(),
            source,
        };
        // Validate the pattern as the user wrote it, so errors point at their text, not our
        // wrapper.
        RegexBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(invalid)?;
        let folded = fold(pattern, false);
        let keyword = compile_keyword(&folded).map_err(invalid)?;
        Ok(Self {
            keyword,
            builtin: false,
        })
    }

    /// The claim in `comment`, or `None` when it is not a claim. See the module docs for the
    /// grammar.
    pub fn parse(&self, comment: &str) -> Option<Claim> {
        let start = if self.builtin {
            builtin_prefilter(comment)?
        } else {
            first_alphanumeric(comment)?
        };
        let text = normalise(&comment[start..]);
        let text = text.trim_start_matches(|c: char| !c.is_alphanumeric());
        if !self.keyword.is_match(text) {
            return None;
        }
        let keyword = self.keyword.captures(text)?.get(1)?;
        if keyword.is_empty() {
            return None;
        }
        let fields = parse_tail(&text[keyword.end()..])?;
        Some(Claim {
            item: fields.item,
            variant: fields.variant,
            quantity: fields.quantity,
            raw: comment.to_owned(),
        })
    }
}

fn compile_keyword(keyword: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!(r"^((?:{keyword}))(?:$|[^\p{{Alphabetic}}])"))
        .case_insensitive(true)
        .build()
}

/// Byte offset of the first letter or digit.
fn first_alphanumeric(s: &str) -> Option<usize> {
    s.char_indices()
        .find(|&(_, c)| c.is_alphanumeric())
        .map(|(i, _)| i)
}

/// Cheap, allocation-free rejection for the built-in keyword: the first letter or digit must be a
/// `j` (or a character whose compatibility decomposition starts with one), and an ASCII `j` must be
/// followed by something that can continue a keyword. Returns where that `j` is.
fn builtin_prefilter(s: &str) -> Option<usize> {
    let (i, c) = s.char_indices().find(|&(_, c)| c.is_alphanumeric())?;
    match c {
        'j' | 'J' => {
            let next = s[i + 1..].chars().next()?;
            let can_follow = matches!(next, 'p' | 'P' | 'e' | 'E' | '\'' | '`')
                || next.is_whitespace()
                || !next.is_ascii();
            can_follow.then_some(i)
        }
        c if c.is_ascii() => None,
        c => {
            let mut first = None;
            decompose_compatible(c, |d| {
                first.get_or_insert(d);
            });
            matches!(first, Some('j' | 'J')).then_some(i)
        }
    }
}

/// Typographic variants read as their plain form, before and after decomposition.
fn map_char(c: char) -> char {
    match c {
        '\u{2019}' | '\u{2018}' | '`' | '\u{00B4}' | '\u{02BC}' | '\u{02BB}' | '\u{2032}' => '\'',
        '\u{00D7}' | '\u{2715}' | '\u{2716}' => 'x',
        '\u{00BA}' => '\u{00B0}',
        '\u{2116}' => '#',
        c => c,
    }
}

/// The text compared against the grammar: see the module docs. Borrows when nothing changes.
fn normalise(s: &str) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b == b'`' || b.is_ascii_uppercase()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(fold(s, true))
}

fn fold(s: &str, lowercase: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut push = |c: char| {
        let c = map_char(c);
        if !lowercase {
            out.push(c);
        } else if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase().filter(|&l| !is_combining_mark(l)));
        }
    };
    for c in s.chars() {
        let c = map_char(c);
        if c.is_ascii() {
            push(c);
        } else {
            decompose_compatible(c, |d| {
                if !is_combining_mark(d) {
                    push(d);
                }
            });
        }
    }
    out
}

struct Fields {
    item: Option<String>,
    variant: Option<String>,
    quantity: u32,
}

/// Articles skipped before an item or variant ("je prends le 12", "je prends la rouge").
const FILLERS: &[&str] = &["le", "la", "l", "les", "the"];
/// A keyword directly followed by one of these is not a claim ("je prends pas").
const NEGATIONS: &[&str] = &["pas", "plus", "rien", "jamais"];
/// Words announcing an item code: "n° 12", "réf A12", "article 3".
const ITEM_PREFIXES: &[&str] = &[
    "n",
    "no",
    "nr",
    "nro",
    "num",
    "numero",
    "ref",
    "reference",
    "art",
    "article",
    "item",
    "produit",
    "code",
    "modele",
    "model",
];
/// Before a number: "x2", "qty 2", "qté: 2".
const QTY_PREFIXES: &[&str] = &["x", "qty", "qte", "qt", "qtt", "quantite", "quantity"];
/// After a number: "2x", "2 pièces", "2 pcs", "2 fois".
const QTY_SUFFIXES: &[&str] = &[
    "x",
    "pieces",
    "piece",
    "pces",
    "pce",
    "pcs",
    "pc",
    "fois",
    "exemplaires",
    "exemplaire",
    "ex",
    "unites",
    "unite",
];
/// Before a size: "taille 38", "t38", "size M".
const SIZE_WORDS: &[&str] = &["taille", "size", "t"];
const SIZES: &[&str] = &[
    "xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl", "xxxxl", "2xs", "3xs", "2xl", "3xl", "4xl",
    "5xl", "6xl",
];
const COLOURS: &[&str] = &[
    "rouge",
    "noir",
    "noire",
    "blanc",
    "blanche",
    "bleu",
    "bleue",
    "vert",
    "verte",
    "jaune",
    "rose",
    "violet",
    "violette",
    "orange",
    "gris",
    "grise",
    "marron",
    "beige",
    "kaki",
    "bordeaux",
    "marine",
    "turquoise",
    "dore",
    "doree",
    "argent",
    "argente",
    "argentee",
    "camel",
    "ecru",
    "creme",
    "fuchsia",
    "corail",
    "moutarde",
    "taupe",
    "nude",
    "multicolore",
    "lila",
    "lilas",
    "mauve",
    "prune",
    "saumon",
    "framboise",
    "cognac",
    "chocolat",
    "caramel",
    "sable",
    "ivoire",
    "anthracite",
    "red",
    "black",
    "white",
    "blue",
    "green",
    "yellow",
    "pink",
    "purple",
    "grey",
    "gray",
    "brown",
    "gold",
    "silver",
    "navy",
    "cream",
];
/// Second word of a compound colour: "bleu marine", "vert kaki", "gris clair".
const SHADES: &[&str] = &[
    "clair",
    "claire",
    "fonce",
    "foncee",
    "marine",
    "ciel",
    "pale",
    "canard",
    "roi",
    "nuit",
    "electrique",
    "fluo",
    "pastel",
    "poudre",
    "kaki",
    "olive",
    "sapin",
    "emeraude",
    "bouteille",
    "pomme",
    "chine",
    "chinee",
    "vif",
    "light",
    "dark",
];
/// Chat words that are never a free-word variant, and that may trail one ("jp 12 fleuri svp").
const CHATTER: &[&str] = &[
    "svp",
    "stp",
    "svpl",
    "sil",
    "s",
    "il",
    "vous",
    "te",
    "plait",
    "plais",
    "merci",
    "mrc",
    "mci",
    "please",
    "pls",
    "plz",
    "thanks",
    "thank",
    "thx",
    "you",
    "moi",
    "aussi",
    "pour",
    "ok",
    "oki",
    "okay",
    "oui",
    "non",
    "yes",
    "si",
    "ca",
    "cela",
    "ce",
    "c",
    "est",
    "celui",
    "celle",
    "ci",
    "trop",
    "tres",
    "beau",
    "belle",
    "joli",
    "jolie",
    "top",
    "super",
    "magnifique",
    "sublime",
    "canon",
    "parfait",
    "mais",
    "ou",
    "et",
    "and",
    "or",
    "avec",
    "sans",
    "encore",
    "deja",
    "bien",
    "j",
    "je",
    "me",
    "ma",
    "mon",
    "mes",
    "ta",
    "ton",
    "tes",
    "un",
    "une",
    "en",
    "de",
    "du",
    "des",
    "d",
    "go",
    "vite",
    "bonjour",
    "bonsoir",
    "coucou",
    "hello",
    "bjr",
    "bsr",
    "slt",
    "salut",
    "bisous",
    "lol",
    "mdr",
    "madame",
    "mme",
    "wow",
    "waouh",
    "love",
    "adore",
    "aime",
    "veux",
    "prends",
    "prend",
    "meme",
    "comme",
    "a",
    "ensemble",
    "tout",
    "tous",
    "toute",
    "toutes",
];

fn is_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// `letters + digits` (letters possibly empty) split in two.
fn split_letters_digits(t: &str) -> Option<(&str, &str)> {
    let n = t.bytes().take_while(u8::is_ascii_lowercase).count();
    let (letters, digits) = t.split_at(n);
    is_digits(digits).then_some((letters, digits))
}

/// `digits + letters` (both non-empty) split in two.
fn split_digits_letters(t: &str) -> Option<(&str, &str)> {
    let n = t.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, letters) = t.split_at(n);
    (n > 0 && !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase()))
        .then_some((digits, letters))
}

/// The largest quantity a claim can carry.
pub const MAX_QUANTITY: u32 = 999;

/// 1..=[`MAX_QUANTITY`], or `None` for 0 and anything larger.
fn quantity_value(digits: &str) -> Option<u32> {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    digits.parse().ok().filter(|&n| n <= MAX_QUANTITY)
}

fn is_reserved(w: &str) -> bool {
    [
        FILLERS,
        NEGATIONS,
        ITEM_PREFIXES,
        QTY_PREFIXES,
        QTY_SUFFIXES,
        SIZE_WORDS,
        CHATTER,
    ]
    .iter()
    .any(|list| list.contains(&w))
}

/// A quantity at `t[i]`: its value (`None` when out of range) and how many tokens it spans.
/// `spaced_x` allows "2 x" (number, then a separate `x`): only once an item was read, otherwise
/// "jp 12 x" would be quantity 12.
fn quantity_at(t: &[&str], i: usize, spaced_x: bool) -> Option<(Option<u32>, usize)> {
    let tok = *t.get(i)?;
    let next = t.get(i + 1).copied();
    if let Some((letters, digits)) = split_letters_digits(tok) {
        if QTY_PREFIXES.contains(&letters) {
            return Some((quantity_value(digits), 1));
        }
        // "2 pièces", "2 x" — but "4 x 2" is item 4, quantity 2.
        if letters.is_empty()
            && let Some(next) = next
            && QTY_SUFFIXES.contains(&next)
            && (next != "x" || (spaced_x && !t.get(i + 2).is_some_and(|s| is_digits(s))))
        {
            return Some((quantity_value(digits), 2));
        }
        return None;
    }
    if let Some((digits, letters)) = split_digits_letters(tok)
        && QTY_SUFFIXES.contains(&letters)
    {
        return Some((quantity_value(digits), 1));
    }
    if QTY_PREFIXES.contains(&tok)
        && let Some(next) = next
        && is_digits(next)
    {
        return Some((quantity_value(next), 2));
    }
    None
}

/// A size or colour at `t[i]` and how many tokens it spans.
fn variant_at(t: &[&str], i: usize) -> Option<(String, usize)> {
    let tok = *t.get(i)?;
    if SIZES.contains(&tok) {
        return Some((tok.to_ascii_uppercase(), 1));
    }
    if SIZE_WORDS.contains(&tok)
        && let Some(&next) = t.get(i + 1)
    {
        if is_digits(next) && next.len() <= 3 {
            return Some((next.to_owned(), 2));
        }
        if SIZES.contains(&next) {
            return Some((next.to_ascii_uppercase(), 2));
        }
        if next == "unique" {
            return Some(("TU".to_owned(), 2));
        }
    }
    if let Some((letters, digits)) = split_letters_digits(tok)
        && SIZE_WORDS.contains(&letters)
        && digits.len() <= 3
    {
        return Some((digits.to_owned(), 1));
    }
    if COLOURS.contains(&tok) {
        if let Some(&next) = t.get(i + 1)
            && SHADES.contains(&next)
        {
            return Some((format!("{tok} {next}"), 2));
        }
        return Some((tok.to_owned(), 1));
    }
    None
}

/// An item code at `t[i]` (possibly after a prefix word) and how many tokens it spans.
fn item_at(t: &[&str], i: usize) -> Option<(String, usize)> {
    let tok = *t.get(i)?;
    if ITEM_PREFIXES.contains(&tok)
        && let Some(code) = t.get(i + 1).and_then(|n| item_code(n))
    {
        return Some((code, 2));
    }
    item_code(tok).map(|code| (code, 1))
}

fn item_code(tok: &str) -> Option<String> {
    let (letters, digits) = split_letters_digits(tok)?;
    let ok = letters.len() <= 3
        && digits.len() <= 6
        && !QTY_PREFIXES.contains(&letters)
        && !SIZE_WORDS.contains(&letters);
    ok.then(|| tok.to_ascii_uppercase())
}

/// `4x2` / `a12x3`: an item code glued to a quantity.
fn item_times(tok: &str) -> Option<(String, Option<u32>)> {
    let (code, qty) = tok.rsplit_once('x')?;
    let item = item_code(code)?;
    is_digits(qty).then(|| (item, quantity_value(qty)))
}

/// A free-word variant at `t[i]`: one short word followed only by a quantity and chatter.
fn free_word_at(t: &[&str], i: usize) -> Option<String> {
    let word = *t.get(i)?;
    let len = word.chars().count();
    if !(2..=15).contains(&len) || !word.chars().all(char::is_alphabetic) || is_reserved(word) {
        return None;
    }
    let mut rest = i + 1;
    if let Some((_, n)) = quantity_at(t, rest, true) {
        rest += n;
    }
    t[rest.min(t.len())..]
        .iter()
        .all(|w| CHATTER.contains(w))
        .then(|| word.to_owned())
}

/// Runs of letters and digits; everything else separates. A one-letter elision directly followed by
/// an apostrophe (`l'`, `d'`, `qu'`…) is dropped: "l'a12" is "a12", "l'ensemble" is not size L.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(st) = start.take() {
            let tok = &s[st..i];
            let elision = c == '\''
                && (tok.len() == 1 || tok == "qu")
                && tok.bytes().all(|b| b.is_ascii_lowercase());
            if !elision {
                out.push(tok);
            }
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// Item, variant and quantity from the normalised text after the keyword; `None` for a negation.
fn parse_tail(tail: &str) -> Option<Fields> {
    let t = tokens(tail);
    if t.first().is_some_and(|w| NEGATIONS.contains(w)) {
        return None;
    }
    let mut i = 0;
    if t.len() > 1
        && FILLERS.contains(&t[0])
        && (item_at(&t, 1).is_some() || variant_at(&t, 1).is_some())
    {
        i = 1;
    }
    let mut item = None;
    let mut quantity = None;
    let mut seen_quantity = false;
    if let Some((code, q)) = t.get(i).and_then(|tok| item_times(tok)) {
        // "jp 4x2": item 4, quantity 2.
        item = Some(code);
        quantity = q;
        seen_quantity = true;
        i += 1;
    } else if quantity_at(&t, i, false).is_none()
        && variant_at(&t, i).is_none()
        && let Some((code, n)) = item_at(&t, i)
    {
        item = Some(code);
        i += n;
    }
    let item_end = i;
    let mut variant = None;
    while i < t.len() {
        if !seen_quantity && let Some((q, n)) = quantity_at(&t, i, item.is_some()) {
            seen_quantity = true;
            quantity = q;
            i += n;
            continue;
        }
        if variant.is_none() {
            let j = if t[i] == "en" { i + 1 } else { i };
            if let Some((v, n)) = variant_at(&t, j) {
                variant = Some(v);
                i = j + n;
                continue;
            }
            if item.is_some()
                && i == item_end
                && let Some(w) = free_word_at(&t, j)
            {
                variant = Some(w);
                i = j + 1;
                continue;
            }
        }
        break;
    }
    Some(Fields {
        item,
        variant,
        quantity: quantity.unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expected = Option<(Option<&'static str>, Option<&'static str>, u32)>;

    fn got(parser: &ClaimParser, input: &str) -> Option<(Option<String>, Option<String>, u32)> {
        parser.parse(input).map(|c| (c.item, c.variant, c.quantity))
    }

    fn want(e: Expected) -> Option<(Option<String>, Option<String>, u32)> {
        e.map(|(i, v, q)| (i.map(str::to_owned), v.map(str::to_owned), q))
    }

    fn check_table(parser: &ClaimParser, table: &[(&str, Expected)]) {
        let failures: Vec<String> = table
            .iter()
            .filter_map(|&(input, expected)| {
                let got = got(parser, input);
                (got != want(expected))
                    .then(|| format!("{input:?}: got {got:?}, want {expected:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    const POSITIVE: &[(&str, Expected)] = &[
        ("JP", Some((None, None, 1))),
        ("jp", Some((None, None, 1))),
        ("Jp 12", Some((Some("12"), None, 1))),
        ("jp12", Some((Some("12"), None, 1))),
        ("JP A12", Some((Some("A12"), None, 1))),
        ("jp #12", Some((Some("12"), None, 1))),
        ("jp#12", Some((Some("12"), None, 1))),
        ("J'prends 12", Some((Some("12"), None, 1))),
        ("j’prends le 12", Some((Some("12"), None, 1))),
        ("j‘prends 12", Some((Some("12"), None, 1))),
        ("j`prends 12", Some((Some("12"), None, 1))),
        ("j´prends 12", Some((Some("12"), None, 1))),
        ("jprends a3 M", Some((Some("A3"), Some("M"), 1))),
        ("je prends 5 rouge", Some((Some("5"), Some("rouge"), 1))),
        ("JE PRENDS 7 taille 38", Some((Some("7"), Some("38"), 1))),
        ("jp 4 x2", Some((Some("4"), None, 2))),
        ("jp 4 ×2", Some((Some("4"), None, 2))),
        ("jp 4 X 2", Some((Some("4"), None, 2))),
        ("jp 4 2x", Some((Some("4"), None, 2))),
        ("jp 4 qty 2", Some((Some("4"), None, 2))),
        ("jp 4 qté: 3", Some((Some("4"), None, 3))),
        ("jp 4 quantité 2", Some((Some("4"), None, 2))),
        ("jp 4 2 pièces", Some((Some("4"), None, 2))),
        ("jp 4 2pcs", Some((Some("4"), None, 2))),
        ("🔥 jp 9", Some((Some("9"), None, 1))),
        ("🔥🔥 JP 12", Some((Some("12"), None, 1))),
        ("  jp", Some((None, None, 1))),
        ("👉jp a12", Some((Some("A12"), None, 1))),
        ("👉👉JP 10 L", Some((Some("10"), Some("L"), 1))),
        ("J'PRÉNDS 3", Some((Some("3"), None, 1))),
        ("jé prends 2", Some((Some("2"), None, 1))),
        ("j prends 2", Some((Some("2"), None, 1))),
        ("j'prend 6", Some((Some("6"), None, 1))),
        ("jprend 6", Some((Some("6"), None, 1))),
        ("je prend 6", Some((Some("6"), None, 1))),
        ("jp 12 M x3", Some((Some("12"), Some("M"), 3))),
        ("jp 12 x3 M", Some((Some("12"), Some("M"), 3))),
        ("jp, 12", Some((Some("12"), None, 1))),
        ("jp: 12", Some((Some("12"), None, 1))),
        ("jp - 12", Some((Some("12"), None, 1))),
        ("jp xl", Some((None, Some("XL"), 1))),
        ("jp 8 xxl", Some((Some("8"), Some("XXL"), 1))),
        ("jp 8 2XL", Some((Some("8"), Some("2XL"), 1))),
        ("jp 3 t38", Some((Some("3"), Some("38"), 1))),
        ("jp 3 T 38", Some((Some("3"), Some("38"), 1))),
        ("jp 3 size m", Some((Some("3"), Some("M"), 1))),
        ("jp 3 taille unique", Some((Some("3"), Some("TU"), 1))),
        ("jp n°12", Some((Some("12"), None, 1))),
        ("jp nº12", Some((Some("12"), None, 1))),
        ("jp no 12", Some((Some("12"), None, 1))),
        ("jp numéro 12", Some((Some("12"), None, 1))),
        ("jp réf A12", Some((Some("A12"), None, 1))),
        ("jp 12 svp merci ❤️", Some((Some("12"), None, 1))),
        ("jp 12 Rouge", Some((Some("12"), Some("rouge"), 1))),
        (
            "jp a12 bleu marine",
            Some((Some("A12"), Some("bleu marine"), 1)),
        ),
        ("jp 5 Doré x2", Some((Some("5"), Some("dore"), 2))),
        ("jp 12 fleuri", Some((Some("12"), Some("fleuri"), 1))),
        ("jp 12 fleuri x2 svp", Some((Some("12"), Some("fleuri"), 2))),
        ("jp 12 robe fleurie", Some((Some("12"), None, 1))),
        ("je prends le 12 en M", Some((Some("12"), Some("M"), 1))),
        ("je prends la rouge", Some((None, Some("rouge"), 1))),
        ("jp L", Some((None, Some("L"), 1))),
        ("jp x2", Some((None, None, 2))),
        ("jp 12 x0", Some((Some("12"), None, 1))),
        ("jp 12 x1000", Some((Some("12"), None, 1))),
        ("jp 12 x999", Some((Some("12"), None, 999))),
        ("jp 012", Some((Some("012"), None, 1))),
        ("jp M 12", Some((None, Some("M"), 1))),
        ("JP!!", Some((None, None, 1))),
        ("jp ❤️", Some((None, None, 1))),
        ("ＪＰ １２", Some((Some("12"), None, 1))),
        ("𝐉𝐏 12", Some((Some("12"), None, 1))),
        ("jp\u{a0}12", Some((Some("12"), None, 1))),
        ("jp 12 et 13", Some((Some("12"), None, 1))),
        ("jp svp", Some((None, None, 1))),
        ("jp 4x2", Some((Some("4"), None, 2))),
        ("jp a12x3 M", Some((Some("A12"), Some("M"), 3))),
        ("jp 4 2 x", Some((Some("4"), None, 2))),
        ("jp 12 x", Some((Some("12"), None, 1))),
        ("jp 2 x", Some((Some("2"), None, 1))),
        ("jp 2x", Some((None, None, 2))),
        ("jp 2 pcs", Some((None, None, 2))),
        ("jp 12 ✖️ 2", Some((Some("12"), None, 2))),
        ("je prends l'a12", Some((Some("A12"), None, 1))),
        ("jp 12 l'ensemble", Some((Some("12"), None, 1))),
        ("jp l x2", Some((None, Some("L"), 2))),
        ("jp 12 38", Some((Some("12"), None, 1))),
        ("jp 1234567", Some((None, None, 1))),
        ("Jp? 12", Some((Some("12"), None, 1))),
        ("j' prends 3", Some((Some("3"), None, 1))),
        ("jeprends 3", Some((Some("3"), None, 1))),
    ];

    const NEGATIVE: &[&str] = &[
        "jpp",
        "JPEG",
        "ajp",
        "jpg",
        "jpp trop beau",
        "j'adore",
        "je prend pas",
        "je prends pas le 12",
        "j'prends plus",
        "",
        "   ",
        "🔥🔥",
        "prends",
        "moi jp",
        "ok jp 12",
        "jpeux pas",
        "je peux",
        "jolie",
        "j",
        "12 jp",
        "jprendre",
        "je prendrai",
    ];

    #[test]
    fn real_world_spellings() {
        check_table(&ClaimParser::new(), POSITIVE);
        assert!(POSITIVE.len() >= 45);
    }

    #[test]
    fn not_claims() {
        let parser = ClaimParser::default();
        for input in NEGATIVE {
            assert_eq!(parser.parse(input), None, "{input:?}");
        }
    }

    #[test]
    fn raw_is_the_original_comment() {
        let parser = ClaimParser::new();
        let input = "🔥🔥 J’PRÉNDS  n°A12 Rouge ×2 svp ❤️";
        let claim = parser.parse(input).unwrap();
        assert_eq!(
            claim,
            Claim {
                item: Some("A12".into()),
                variant: Some("rouge".into()),
                quantity: 2,
                raw: input.to_owned(),
            }
        );
    }

    #[test]
    fn custom_keyword_pattern() {
        let parser = ClaimParser::with_keyword_pattern("moi|pour moi|je veux").unwrap();
        check_table(
            &parser,
            &[
                ("je veux 12 M", Some((Some("12"), Some("M"), 1))),
                ("JE VEUX 12 M", Some((Some("12"), Some("M"), 1))),
                ("🔥 pour moi a3 x2", Some((Some("A3"), None, 2))),
                ("moi", Some((None, None, 1))),
                ("moi12", Some((Some("12"), None, 1))),
                ("moins cher ?", None),
                ("jp 12", None),
                ("je veux pas", None),
                ("", None),
            ],
        );
        let accented = ClaimParser::with_keyword_pattern("réservé").unwrap();
        assert_eq!(
            got(&accented, "RESERVE 4"),
            Some((Some("4".into()), None, 1))
        );
        assert_eq!(
            got(&accented, "réservé 4"),
            Some((Some("4".into()), None, 1))
        );
    }

    #[test]
    fn empty_custom_match_is_not_a_claim() {
        let parser = ClaimParser::with_keyword_pattern("x*").unwrap();
        assert_eq!(parser.parse("12 rouge"), None);
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        let err = ClaimParser::with_keyword_pattern("je (veux").unwrap_err();
        let ClaimPatternError::Invalid { pattern, .. } = &err;
        assert_eq!(pattern, "je (veux");
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid --claim-pattern \"je (veux\": "),
            "{msg}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn parser_is_shareable() {
        fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
        assert_send_sync_clone::<ClaimParser>();
        let parser = ClaimParser::new();
        let clone = parser.clone();
        let handle = std::thread::spawn(move || clone.parse("jp 1").is_some());
        assert!(handle.join().unwrap());
    }

    #[test]
    fn claim_serialises() {
        // serde_json is a regular dependency of the crate.
        let claim = ClaimParser::new().parse("jp 3 M").unwrap();
        assert_eq!(
            serde_json::to_string(&claim).unwrap(),
            r#"{"item":"3","variant":"M","quantity":1,"raw":"jp 3 M"}"#
        );
    }
}
