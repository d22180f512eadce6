//! `docket audit ...`

use docket_proto::audit::v1::{ListRecordsRequest, VerifyLedgerRequest};

use super::{Context, Outcome, page_size, rpc_error};
use crate::args::AuditCommand;
use crate::error::Error;
use crate::output::{self, json};

pub async fn run(context: &Context, command: AuditCommand) -> Result<Outcome, Error> {
    match command {
        AuditCommand::List {
            ticket,
            actor,
            action,
            limit,
        } => list(context, ticket, actor, action, limit).await,
        AuditCommand::Verify => verify(context).await,
    }
}

async fn list(context: &Context, ticket: Option<String>, actor: Option<String>, action: Option<String>, limit: usize) -> Result<Outcome, Error> {
    let mut client = context.audit_client().await?;
    let mut request = ListRecordsRequest {
        resource: ticket.unwrap_or_default(),
        actor: actor.unwrap_or_default(),
        action: action.unwrap_or_default(),
        ..ListRecordsRequest::default()
    };

    let mut records = Vec::new();
    loop {
        request.page_size = page_size(limit, records.len());
        let page = client.list_records(request.clone()).await.map_err(rpc_error("ListRecords"))?.into_inner();
        records.extend(page.records);
        let reached_limit = limit != 0 && records.len() >= limit;
        if page.next_page_token.is_empty() || reached_limit {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if limit != 0 {
        records.truncate(limit);
    }

    if context.global.json {
        let values: Vec<_> = records.iter().map(json::record).collect();
        output::print_json(&serde_json::Value::Array(values))?;
        return Ok(Outcome::Success);
    }
    let mut table = output::table(["SEQ", "OCCURRED", "ACTION", "RESOURCE", "ACTOR", "EVENT"]);
    for record in &records {
        table.add_row([
            record.seq.to_string(),
            output::timestamp(record.occurred_at.as_ref()),
            record.action.clone(),
            record.resource_id.clone(),
            record.actor.clone(),
            record.event_id.clone(),
        ]);
    }
    output::print(table)?;
    output::print(output::count(records.len(), "record"))?;
    Ok(Outcome::Success)
}

async fn verify(context: &Context) -> Result<Outcome, Error> {
    let mut client = context.audit_client().await?;
    let response = client.verify_ledger(VerifyLedgerRequest {}).await.map_err(rpc_error("VerifyLedger"))?.into_inner();

    if context.global.json {
        output::print_json(&json::verification(&response))?;
    } else if response.intact {
        output::print(format!(
            "intact: yes\nrecords: {}\nhead: seq {} hash {}",
            response.records_checked,
            response.head_seq,
            hex::encode(&response.head_hash)
        ))?;
    } else {
        output::print(format!(
            "intact: no\nrecords checked: {}\nfirst bad seq: {}\nproblem: {}",
            response.records_checked, response.first_bad_seq, response.problem
        ))?;
    }
    Ok(if response.intact { Outcome::Success } else { Outcome::LedgerNotIntact })
}
