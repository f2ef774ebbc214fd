//! Plain-text tables: left-aligned columns two spaces apart, padded by display width (so `→`
//! and `—` line up) before colour is applied (so escape codes never shift a column).

use super::output::{pad, Paint, Style};

/// One cell: its text and an optional colour.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    paint: Option<Paint>,
    /// Already-coloured text shown instead of `text` (which still sets the width).
    rendered: Option<String>,
}

impl Cell {
    /// A cell without colour.
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            // A cell is one line, and a name or path from a log (which anyone can write) must
            // neither split its row nor send escape sequences to the terminal.
            text: super::output::one_line(text.into()),
            paint: None,
            rendered: None,
        }
    }

    /// A cell whose coloured form `rendered` was made by the caller (several colours in one
    /// cell); `plain` is the same text without escape codes, for the width.
    pub fn prepainted(plain: impl Into<String>, rendered: String) -> Cell {
        Cell {
            text: plain.into(),
            paint: None,
            rendered: Some(rendered),
        }
    }

    /// A coloured cell.
    pub fn painted(text: impl Into<String>, paint: Paint) -> Cell {
        Cell::maybe(text, Some(paint))
    }

    /// A cell coloured when `paint` is `Some`.
    pub fn maybe(text: impl Into<String>, paint: Option<Paint>) -> Cell {
        Cell {
            text: super::output::one_line(text.into()),
            paint,
            rendered: None,
        }
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::plain(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::plain(s)
    }
}

/// A table with a header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The lines of the table: the bold header, then the rows. Trailing spaces are trimmed.
    pub fn render(&self, style: Style) -> Vec<String> {
        let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
        let mut widths = Widths::new(&header);
        for row in &self.rows {
            widths.measure(row);
        }
        let mut out = Vec::with_capacity(self.rows.len() + 1);
        out.push(widths.header(style));
        out.extend(self.rows.iter().map(|row| widths.line(row, style)));
        out
    }
}

/// A table's column widths, measured one row at a time, so that a long table can be printed
/// as it is made: every row measured in a first pass, then each printed with
/// [`Widths::line`].
#[derive(Debug, Clone)]
pub struct Widths {
    header: Vec<Cell>,
    widths: Vec<usize>,
}

impl Widths {
    /// The widths of the column titles `header` alone.
    pub fn new(header: &[&str]) -> Widths {
        Widths {
            header: header
                .iter()
                .map(|h| Cell::painted(*h, Paint::Bold))
                .collect(),
            widths: header.iter().map(|h| width(h)).collect(),
        }
    }

    /// Widens the columns to fit `row`.
    pub fn measure(&mut self, row: &[Cell]) {
        if self.widths.len() < row.len() {
            self.widths.resize(row.len(), 0);
        }
        for (w, c) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(width(&c.text));
        }
    }

    /// Widens column `column` to `width` characters.
    pub fn fit(&mut self, column: usize, width: usize) {
        if let Some(w) = self.widths.get_mut(column) {
            *w = (*w).max(width);
        }
    }

    /// The bold header line.
    pub fn header(&self, style: Style) -> String {
        line(&self.header, &self.widths, style)
    }

    /// The line of `row`, measured before.
    pub fn line(&self, row: &[Cell], style: Style) -> String {
        line(row, &self.widths, style)
    }
}

fn line(cells: &[Cell], widths: &[usize], style: Style) -> String {
    let last = cells
        .iter()
        .rposition(|c| !c.text.is_empty())
        .map_or(0, |i| i + 1);
    let mut out = String::new();
    for (i, cell) in cells.iter().take(last).enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        let text = if i + 1 == last {
            cell.text.clone()
        } else {
            pad(&cell.text, widths[i])
        };
        if let (Some(r), true) = (&cell.rendered, style.is_colored()) {
            out.push_str(r);
            out.push_str(&text[cell.text.len()..]);
            continue;
        }
        match cell.paint {
            Some(p) if style.is_colored() => {
                let trimmed = text.trim_end();
                out.push_str(&style.paint(p, trimmed));
                out.push_str(&text[trimmed.len()..]);
            }
            _ => out.push_str(&text),
        }
    }
    out
}

/// Display width in characters.
pub fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_so_a_row_stays_one_line() {
        let mut t = Table::new(&["NAME", "N"]);
        t.push(vec![Cell::plain("a\nb\x1b]0;title\x07"), Cell::plain("1")]);
        t.push(vec![
            Cell::painted("tab\there", Paint::Red),
            Cell::plain("2"),
        ]);
        assert_eq!(
            t.render(Style::new(false)),
            [
                "NAME                     N",
                "a\\nb\\u{1b}]0;title\\u{7}  1",
                "tab\\there                2",
            ]
        );
    }

    #[test]
    fn columns_align_by_characters_and_colour_does_not_shift_them() {
        let mut t = Table::new(&["EDGE", "STATUS"]);
        t.push(vec!["a → b".into(), "200".into()]);
        t.push(vec!["—".into(), Cell::painted("500", Paint::Red)]);
        assert_eq!(
            t.render(Style::plain()),
            ["EDGE   STATUS", "a → b  200", "—      500"]
        );
        let colored = t.render(Style::new(true));
        assert_eq!(colored[0], "\x1b[1mEDGE\x1b[0m   \x1b[1mSTATUS\x1b[0m");
        assert_eq!(colored[2], "—      \x1b[31m500\x1b[0m");
    }
}
