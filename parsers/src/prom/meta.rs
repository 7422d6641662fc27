//! Comment lines: `# HELP`, `# TYPE` and (OpenMetrics) `# UNIT`, which set
//! the family the next samples belong to, free comments (text format), and
//! OpenMetrics' `# EOF` before the end.

use super::error::ErrorKind;
use super::fast;
use super::kinds::{Format, MetricType};
use super::line::{skip_ws, split_metric_name};
use super::parser::Parser;
use super::sample::Family;

impl<'a> Parser<'a> {
    /// A plain `# HELP` or `# TYPE` line starting at `start`
    /// ([`fast::metadata`]), applied to the current family: true when it
    /// was one, and `pos` has moved to the next line.
    #[inline(always)]
    pub(super) fn plain_metadata(&mut self, start: usize) -> bool {
        let (text, offset) = self.utf8.text_from(start);
        let Some((name, meta, stop)) =
            fast::metadata(text, start - offset, self.format, &self.limits)
        else {
            return false;
        };
        if offset + stop >= self.end {
            return false; // past OpenMetrics' final `# EOF`: never in practice
        }
        if self.family.name != name {
            self.family = Family::undeclared(name, self.format);
        }
        match meta {
            fast::Meta::Help(help) => self.family.help = Some(help),
            fast::Meta::Type(kind) => self.family.kind = kind,
        }
        self.pos = offset + stop + 1;
        true
    }

    /// A line starting with `#` (at `hash`): metadata, a comment, or
    /// OpenMetrics' `# EOF` before the end.
    pub(super) fn comment(
        &mut self,
        start: usize,
        stop: usize,
        hash: usize,
    ) -> Result<(), ErrorKind> {
        let bytes = &self.body[start..stop];
        let keyword_at = match self.format {
            Format::Text => {
                let k = skip_ws(bytes, hash + 1);
                if k == hash + 1 {
                    return Ok(()); // `#comment`
                }
                k
            }
            Format::OpenMetrics => {
                if bytes == b"# EOF" {
                    self.pos = self.end;
                    return Err(ErrorKind::DataAfterEof);
                }
                if !bytes.starts_with(b"# ") {
                    return Err(ErrorKind::BadComment);
                }
                2
            }
        };
        let keyword = bytes.get(keyword_at..keyword_at + 4);
        let meta = match keyword {
            Some(b"HELP") => Meta::Help,
            Some(b"TYPE") => Meta::Type,
            Some(b"UNIT") if self.format == Format::OpenMetrics => Meta::Unit,
            _ if self.format == Format::Text => return Ok(()),
            _ => return Err(ErrorKind::BadComment),
        };
        let after = keyword_at + 4;
        let name_at = match self.format {
            Format::Text => skip_ws(bytes, after),
            Format::OpenMetrics => after + usize::from(bytes.get(after) == Some(&b' ')),
        };
        if name_at == after {
            // `# HELPER …`, `# TYPE` alone: a comment in the text format.
            return match self.format {
                Format::Text => Ok(()),
                Format::OpenMetrics => Err(ErrorKind::BadComment),
            };
        }
        let text = self.utf8.get(start, stop).ok_or(ErrorKind::InvalidUtf8)?;
        self.metadata(meta, &text[name_at..])
    }

    /// `# HELP`, `# TYPE` or `# UNIT` from the metric name on.
    fn metadata(&mut self, meta: Meta, text: &'a str) -> Result<(), ErrorKind> {
        let (name, rest) = split_metric_name(text).ok_or(ErrorKind::BadMetricName)?;
        // One separator, then the content (a text-format HELP keeps any
        // further spaces, as Prometheus does).
        let content = match rest.as_bytes().first() {
            None => "",
            Some(b' ') => &rest[1..],
            Some(b'\t') if self.format == Format::Text => &rest[1..],
            Some(_) => return Err(ErrorKind::BadMetricName),
        };
        if name.len() > self.limits.max_label_value_bytes {
            return Err(ErrorKind::LabelValueTooLong);
        }
        if self.family.name != name {
            self.family = Family::undeclared(name, self.format);
        }
        match meta {
            Meta::Help => self.family.help = Some(content),
            Meta::Type => {
                let word = match self.format {
                    Format::Text => content.trim_matches([' ', '\t']),
                    Format::OpenMetrics => content,
                };
                self.family.kind =
                    MetricType::parse(word, self.format).ok_or(ErrorKind::BadType)?;
            }
            Meta::Unit => {
                let fits = content.is_empty()
                    || name
                        .strip_suffix(content)
                        .is_some_and(|base| base.len() > 1 && base.ends_with('_'));
                if !fits {
                    return Err(ErrorKind::BadUnit);
                }
                self.family.unit = (!content.is_empty()).then_some(content);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Meta {
    Help,
    Type,
    Unit,
}
