//! `docket ticket ...`

use comfy_table::Table;
use docket_proto::ticket::v1::{
    AddCommentRequest, Asset, Category, CreateTicketRequest, GetTicketRequest, Indicator, ListTicketsRequest, Resolution,
    Severity, Status, Ticket, TransitionTicketRequest,
};

use super::{Context, Outcome, page_size, rpc_error};
use crate::args::{CreateArgs, ListArgs, TicketCommand};
use crate::error::Error;
use crate::output::{self, json};

pub async fn run(context: &Context, command: TicketCommand) -> Result<Outcome, Error> {
    match command {
        TicketCommand::Create(args) => create(context, args).await,
        TicketCommand::Get { ticket } => get(context, ticket).await,
        TicketCommand::List(args) => list(context, args).await,
        TicketCommand::Transition {
            ticket,
            status,
            resolution,
            note,
        } => {
            let request = TransitionTicketRequest {
                ticket,
                to_status: Status::from(status) as i32,
                resolution: resolution.map(Resolution::from).unwrap_or(Resolution::Unspecified) as i32,
                note: note.unwrap_or_default(),
                etag: String::new(),
            };
            let mut client = context.ticket_client().await?;
            let ticket = client.transition_ticket(request).await.map_err(rpc_error("TransitionTicket"))?.into_inner();
            if context.global.json {
                output::print_json(&json::ticket(&ticket))?;
            } else {
                let mut state = output::status_name(ticket.status);
                if ticket.resolution != Resolution::Unspecified as i32 {
                    state = format!("{state} ({})", output::resolution_name(ticket.resolution));
                }
                output::print(format!("{} is now {state}, version {}", ticket.key, ticket.version))?;
            }
            Ok(Outcome::Success)
        }
        TicketCommand::Comment { ticket, text } => {
            let mut client = context.ticket_client().await?;
            let request = AddCommentRequest {
                ticket: ticket.clone(),
                body: text,
            };
            let comment = client.add_comment(request).await.map_err(rpc_error("AddComment"))?.into_inner();
            if context.global.json {
                output::print_json(&json::comment(&comment))?;
            } else {
                output::print(format!("added comment {} to {ticket}", comment.id))?;
            }
            Ok(Outcome::Success)
        }
    }
}

async fn create(context: &Context, args: CreateArgs) -> Result<Outcome, Error> {
    let request = CreateTicketRequest {
        request_id: args.request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        title: args.title,
        description: args.description.unwrap_or_default(),
        severity: Severity::from(args.severity) as i32,
        category: Category::from(args.category) as i32,
        assignee: args.assignee.unwrap_or_default(),
        team: args.team.unwrap_or_default(),
        // The service records the caller as the reporter.
        reporter: String::new(),
        detection_source: args.detection_source.unwrap_or_default(),
        detection_method: args.detection_method.unwrap_or_default(),
        indicators: args
            .indicators
            .into_iter()
            .map(|(kind, value)| Indicator { r#type: kind as i32, value })
            .collect(),
        assets: args
            .assets
            .into_iter()
            .map(|(kind, name, compromise)| Asset {
                kind: kind as i32,
                name,
                compromise: compromise as i32,
            })
            .collect(),
        tags: args.tags,
        occurred_at: args.occurred_at.map(output::to_timestamp),
        detected_at: args.detected_at.map(output::to_timestamp),
    };
    let mut client = context.ticket_client().await?;
    let ticket = client.create_ticket(request).await.map_err(rpc_error("CreateTicket"))?.into_inner();
    print_ticket(context, &ticket)
}

async fn get(context: &Context, ticket: String) -> Result<Outcome, Error> {
    let mut client = context.ticket_client().await?;
    let ticket = client.get_ticket(GetTicketRequest { ticket }).await.map_err(rpc_error("GetTicket"))?.into_inner();
    print_ticket(context, &ticket)
}

async fn list(context: &Context, args: ListArgs) -> Result<Outcome, Error> {
    let mut client = context.ticket_client().await?;
    let mut request = ListTicketsRequest {
        statuses: args.statuses.iter().map(|status| Status::from(*status) as i32).collect(),
        severities: args.severities.iter().map(|severity| Severity::from(*severity) as i32).collect(),
        categories: args.categories.iter().map(|category| Category::from(*category) as i32).collect(),
        assignee: args.assignee.unwrap_or_default(),
        team: args.team.unwrap_or_default(),
        ..ListTicketsRequest::default()
    };

    let mut tickets = Vec::new();
    loop {
        request.page_size = page_size(args.limit, tickets.len());
        let page = client.list_tickets(request.clone()).await.map_err(rpc_error("ListTickets"))?.into_inner();
        tickets.extend(page.tickets);
        let reached_limit = args.limit != 0 && tickets.len() >= args.limit;
        if page.next_page_token.is_empty() || reached_limit {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if args.limit != 0 {
        tickets.truncate(args.limit);
    }

    if context.global.json {
        let values: Vec<_> = tickets.iter().map(json::ticket).collect();
        return output::print_json(&serde_json::Value::Array(values)).map(|()| Outcome::Success);
    }
    let mut table = output::table(["KEY", "SEVERITY", "STATUS", "CATEGORY", "ASSIGNEE", "TEAM", "CREATED", "TITLE"]);
    for ticket in &tickets {
        table.add_row([
            ticket.key.clone(),
            output::severity_name(ticket.severity),
            output::status_name(ticket.status),
            output::category_name(ticket.category),
            ticket.assignee.clone(),
            ticket.team.clone(),
            output::timestamp(ticket.created_at.as_ref()),
            ticket.title.clone(),
        ]);
    }
    output::print(table)?;
    output::print(output::count(tickets.len(), "ticket"))?;
    Ok(Outcome::Success)
}

fn print_ticket(context: &Context, ticket: &Ticket) -> Result<Outcome, Error> {
    if context.global.json {
        output::print_json(&json::ticket(ticket))?;
        return Ok(Outcome::Success);
    }
    output::print(ticket_table(ticket))?;

    if !ticket.indicators.is_empty() {
        let mut indicators = output::table(["INDICATOR TYPE", "VALUE"]);
        for indicator in &ticket.indicators {
            indicators.add_row([output::indicator_type_name(indicator.r#type), indicator.value.clone()]);
        }
        output::print(indicators)?;
    }
    if !ticket.assets.is_empty() {
        let mut assets = output::table(["ASSET KIND", "NAME", "COMPROMISE"]);
        for asset in &ticket.assets {
            assets.add_row([output::asset_kind_name(asset.kind), asset.name.clone(), output::compromise_name(asset.compromise)]);
        }
        output::print(assets)?;
    }
    if !ticket.comments.is_empty() {
        let mut comments = output::table(["AT", "AUTHOR", "COMMENT"]);
        for comment in &ticket.comments {
            comments.add_row([output::timestamp(comment.created_at.as_ref()), comment.author.clone(), comment.body.clone()]);
        }
        output::print(comments)?;
    }
    Ok(Outcome::Success)
}

/// Builds a two-column table of the ticket's fields, leaving out unset optional fields.
fn ticket_table(ticket: &Ticket) -> Table {
    let mut rows: Vec<(&str, String)> = vec![
        ("key", ticket.key.clone()),
        ("id", ticket.id.clone()),
        ("title", ticket.title.clone()),
        ("severity", output::severity_name(ticket.severity)),
        ("category", output::category_name(ticket.category)),
        ("status", output::status_name(ticket.status)),
        ("resolution", output::resolution_name(ticket.resolution)),
        ("assignee", ticket.assignee.clone()),
        ("team", ticket.team.clone()),
        ("reporter", ticket.reporter.clone()),
        ("detection source", ticket.detection_source.clone()),
        ("detection method", ticket.detection_method.clone()),
        ("tags", ticket.tags.join(", ")),
        ("import source", if ticket.imported { ticket.import_source.clone() } else { String::new() }),
        ("reopen count", if ticket.reopen_count > 0 { ticket.reopen_count.to_string() } else { String::new() }),
        ("version", ticket.version.to_string()),
    ];
    let times = [
        ("occurred at", &ticket.occurred_at),
        ("detected at", &ticket.detected_at),
        ("created at", &ticket.created_at),
        ("updated at", &ticket.updated_at),
        ("acknowledged at", &ticket.acknowledged_at),
        ("contained at", &ticket.contained_at),
        ("eradicated at", &ticket.eradicated_at),
        ("recovered at", &ticket.recovered_at),
        ("resolved at", &ticket.resolved_at),
        ("last resolved at", &ticket.last_resolved_at),
        ("closed at", &ticket.closed_at),
    ];
    rows.extend(times.into_iter().map(|(name, value)| (name, output::timestamp(value.as_ref()))));
    rows.push(("description", ticket.description.clone()));

    let mut table = output::table(["FIELD", "VALUE"]);
    for (name, value) in rows.into_iter().filter(|(_, value)| !value.is_empty()) {
        table.add_row([name.to_owned(), value]);
    }
    table
}
