//! Scannable ticket codes for the emails: a QR code drawn as an HTML table.
//! Email clients block or drop images and inline SVG, but every one of them
//! renders a table with background colours.

use qrcode::{Color, QrCode};

/// Size of one QR module in pixels.
const MODULE_PX: usize = 4;
/// Light modules around the code, as scanners expect.
const QUIET_ZONE: usize = 4;

/// The QR code of `text` as an HTML table (empty if it cannot be encoded).
pub fn html(text: &str) -> String {
    let Ok(code) = QrCode::new(text.as_bytes()) else {
        return String::new();
    };
    let width = code.width();
    let full = width + 2 * QUIET_ZONE;
    // A fixed layout with one column per module keeps every module square,
    // however many modules a cell spans.
    let mut out = format!(
        "<table cellpadding=\"0\" cellspacing=\"0\" role=\"img\" aria-label=\"QR code {text}\" \
         style=\"border-collapse:collapse;background:#fff;table-layout:fixed;width:{}px\">\
         <colgroup>{}</colgroup>",
        full * MODULE_PX,
        format!("<col style=\"width:{MODULE_PX}px\">").repeat(full)
    );
    let quiet_row = format!(
        "<tr><td colspan=\"{full}\" style=\"height:{}px\"></td></tr>",
        QUIET_ZONE * MODULE_PX
    );
    out.push_str(&quiet_row);
    for row in code.to_colors().chunks(width) {
        out.push_str(&format!(
            "<tr style=\"height:{MODULE_PX}px\"><td colspan=\"{QUIET_ZONE}\"></td>"
        ));
        // Runs of one colour become one cell, which keeps the email small.
        let mut x = 0;
        while x < width {
            let run = row[x..].iter().take_while(|c| **c == row[x]).count();
            let fill = if row[x] == Color::Dark {
                "#000"
            } else {
                "#fff"
            };
            out.push_str(&format!(
                "<td colspan=\"{run}\" style=\"background:{fill}\"></td>"
            ));
            x += run;
        }
        out.push_str(&format!("<td colspan=\"{QUIET_ZONE}\"></td></tr>"));
    }
    out.push_str(&quiet_row);
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::html;

    #[test]
    fn a_ticket_code_becomes_a_table_of_dark_and_light_cells() {
        let table = html("TKT-ABCD-EFGH-JKLM");
        assert!(table.starts_with("<table") && table.ends_with("</table>"));
        assert!(table.contains("background:#000") && table.contains("background:#fff"));
        assert!(
            table.len() < 40_000,
            "small enough for an email: {}",
            table.len()
        );
    }
}
