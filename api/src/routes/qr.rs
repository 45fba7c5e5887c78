//! A ticket's QR code, for the buyer to show at the door: the storefront
//! puts one beside each ticket of a confirmed booking.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use uuid::Uuid;

use crate::bookings;
use crate::entity_tag;
use crate::error::{ApiError, Problem};
use crate::extract::Path;
use crate::state::AppState;

/// The QR code of one of a booking's tickets, as SVG: it encodes the
/// ticket's code, which the box office scans at check-in. Only the
/// booking's holder can ask (the booking id is the capability), and only
/// while the ticket is valid (the booking is confirmed).
#[utoipa::path(get, path = "/v1/bookings/{id}/tickets/{code}/qr", tag = "bookings",
    params(
        ("id" = Uuid, Path, description = "the booking"),
        ("code" = String, Path, description = "one of its tickets' codes")),
    responses(
        (status = 200, content_type = "image/svg+xml", body = String,
            description = "The ticket code as a QR code (SVG)", headers(("ETag" = String, description = "digest of the image"))),
        (status = 304, description = "Unchanged since the ETag given in If-None-Match"),
        (status = 404, body = Problem,
            description = "No such booking (`booking_not_found`), or the code is not one of its valid tickets (`not_found`)")))]
#[tracing::instrument(skip_all, fields(booking_id = %id))]
pub async fn ticket_qr(
    State(state): State<AppState>,
    Path((id, code)): Path<(Uuid, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let booking = bookings::load(&state, id).await?;
    // A booking lists its tickets only while it is confirmed.
    if !booking.tickets.iter().any(|ticket| ticket.code == code) {
        return Err(ApiError::NotFound("ticket"));
    }
    let image = render(&code)?;
    let tag = entity_tag::of(image.as_bytes());
    // The image never changes, but the ticket may stop being valid: ask
    // again before reusing it.
    let common = [
        (header::ETAG, tag.clone()),
        (header::CACHE_CONTROL, "private, no-cache".to_owned()),
    ];
    if entity_tag::unchanged(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((common, [(header::CONTENT_TYPE, "image/svg+xml")], image).into_response())
}

/// `code` as an SVG QR code with its quiet zone, medium error correction
/// (a scuffed phone screen still scans).
fn render(code: &str) -> Result<String, ApiError> {
    let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("QR code of a ticket: {err}")))?;
    Ok(qr.render::<svg::Color>().min_dimensions(200, 200).build())
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::render;
    use crate::openapi::ApiDoc;

    #[test]
    fn the_document_describes_the_qr_code_as_an_svg_image_of_a_booking_s_ticket() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let qr = &doc["paths"]["/v1/bookings/{id}/tickets/{code}/qr"]["get"];
        let responses = &qr["responses"];
        assert!(
            responses["200"]["content"]["image/svg+xml"].is_object(),
            "{qr}"
        );
        assert!(responses["404"].is_object(), "{qr}");
        let params: Vec<_> = qr["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
            .collect();
        assert_eq!(params, [("id", "path"), ("code", "path")], "{qr}");
    }

    #[test]
    fn a_ticket_code_renders_as_a_square_svg_of_at_least_200_pixels() {
        let image = render("TKT-7Q2M-9XK4-HN3P").unwrap();
        assert!(image.starts_with("<?xml"), "{image}");
        assert!(image.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let width: u32 = attribute(&image, "width").parse().unwrap();
        assert!(width >= 200, "{width}");
        assert_eq!(attribute(&image, "height"), attribute(&image, "width"));
    }

    fn attribute<'a>(svg: &'a str, name: &str) -> &'a str {
        let start = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        let len = svg[start..].find('"').unwrap();
        &svg[start..start + len]
    }
}
