//! Response-time statistics computed in PostgreSQL, one grouped query per metric, so
//! no ticket rows leave the database.

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Bool, Double, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::Error;
use crate::domain::query::{DurationStats, Filters, GroupBy, Metric, MetricResult, MetricRow, MetricsQuery, Population, TicketCount, Window};

/// Tickets named in the warning about negative durations, per metric and query.
const NEGATIVE_SAMPLE_SIZE: i64 = 20;

/// Population of a row from its resolution: false positive, benign and duplicate each
/// stand alone, while true positives and unresolved tickets are incidents. The names
/// are those of `Population::as_str`.
const POPULATION_SQL: &str = "CASE resolution \
     WHEN 'false_positive' THEN 'false_positive' \
     WHEN 'benign' THEN 'benign' \
     WHEN 'duplicate' THEN 'duplicate' \
     ELSE 'incident' END";

const SEVERITY_KEY_SQL: &str = "CASE WHEN severity = '' THEN 'unrated' ELSE severity END";
const CATEGORY_KEY_SQL: &str = "CASE WHEN category = '' THEN 'none' ELSE category END";
const TEAM_KEY_SQL: &str = "CASE WHEN team = '' THEN 'none' ELSE team END";
const SOURCE_KEY_SQL: &str = "CASE WHEN detection_source = '' THEN 'none' ELSE detection_source END";
const RESOLUTION_KEY_SQL: &str = "CASE WHEN resolution = '' THEN 'none' ELSE resolution END";

/// Filters as SQL over binds $1 to $5. Each list compares the group key of its field,
/// so a filter value selects exactly the group of the same key, and an empty list
/// selects every row.
fn filter_sql() -> String {
    format!(
        "(cardinality($1::text[]) = 0 OR {SEVERITY_KEY_SQL} = ANY($1::text[])) \
         AND (cardinality($2::text[]) = 0 OR {CATEGORY_KEY_SQL} = ANY($2::text[])) \
         AND (cardinality($3::text[]) = 0 OR {TEAM_KEY_SQL} = ANY($3::text[])) \
         AND (cardinality($4::text[]) = 0 OR {SOURCE_KEY_SQL} = ANY($4::text[])) \
         AND ($5::boolean IS NULL OR imported = $5::boolean)"
    )
}

fn key_sql(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::All => "'all'",
        GroupBy::Severity => SEVERITY_KEY_SQL,
        GroupBy::Category => CATEGORY_KEY_SQL,
        GroupBy::Team => TEAM_KEY_SQL,
        GroupBy::Source => SOURCE_KEY_SQL,
        GroupBy::Resolution => RESOLUTION_KEY_SQL,
    }
}

/// SQL pieces of one metric: the instant it ends at (the one the window applies to),
/// the instant it starts from, and which tickets belong to its population.
struct MetricSql {
    end: &'static str,
    start: &'static str,
    population: &'static str,
}

fn metric_sql(metric: Metric) -> MetricSql {
    match metric {
        Metric::Ttd => MetricSql {
            end: "detected_at",
            start: "occurred_at",
            population: "occurred_at IS NOT NULL",
        },
        Metric::Tta => MetricSql {
            end: "acknowledged_at",
            start: "COALESCE(detected_at, created_at)",
            population: "TRUE",
        },
        Metric::Ttc => MetricSql {
            end: "contained_at",
            start: "COALESCE(detected_at, created_at)",
            population: "TRUE",
        },
        // last_resolved_at is unset while a reopened ticket is open again, and the status
        // check keeps out a row whose producer left it set anyway.
        Metric::Ttr => MetricSql {
            end: "last_resolved_at",
            start: "COALESCE(detected_at, created_at)",
            population: "status IN ('resolved', 'closed')",
        },
    }
}

/// Rows of one metric's sample: its population, within the window (binds $6 and $7)
/// and the filters. The window comparison also excludes rows whose end is unset.
fn sample_condition(metric: &MetricSql) -> String {
    format!(
        "{filters} AND {population} \
         AND {end} >= COALESCE($6::timestamptz, '-infinity'::timestamptz) \
         AND {end} < COALESCE($7::timestamptz, 'infinity'::timestamptz)",
        filters = filter_sql(),
        population = metric.population,
        end = metric.end,
    )
}

/// Duration in seconds. The epochs are exact numerics, so the subtraction keeps the
/// microseconds before the conversion to double precision.
fn duration_sql(metric: &MetricSql) -> String {
    format!("(EXTRACT(EPOCH FROM {}) - EXTRACT(EPOCH FROM {}))::double precision", metric.end, metric.start)
}

/// Statistics per group: percentile_disc returns the value at rank ceil(p × n) of
/// the sorted sample, which is the exact nearest-rank percentile.
fn stats_sql(metric: Metric, group_by: GroupBy) -> String {
    let sql = metric_sql(metric);
    format!(
        "SELECT group_key, population, \
             count(*) AS count, \
             avg(seconds) AS mean, \
             percentile_disc(0.5) WITHIN GROUP (ORDER BY seconds) AS median, \
             percentile_disc(0.9) WITHIN GROUP (ORDER BY seconds) AS p90, \
             percentile_disc(0.95) WITHIN GROUP (ORDER BY seconds) AS p95, \
             max(seconds) AS max, \
             count(*) FILTER (WHERE seconds < 0) AS negative \
         FROM (SELECT {key} AS group_key, {POPULATION_SQL} AS population, {duration} AS seconds \
               FROM incidents WHERE {condition}) AS sample \
         GROUP BY group_key, population",
        key = key_sql(group_by),
        duration = duration_sql(&sql),
        condition = sample_condition(&sql),
    )
}

fn negative_sample_sql(metric: Metric) -> String {
    let sql = metric_sql(metric);
    format!(
        "SELECT ticket_id FROM incidents WHERE {condition} AND {duration} < 0 ORDER BY ticket_id LIMIT {NEGATIVE_SAMPLE_SIZE}",
        condition = sample_condition(&sql),
        duration = duration_sql(&sql),
    )
}

fn ticket_count_sql(group_by: GroupBy) -> String {
    format!(
        "SELECT {key} AS group_key, {POPULATION_SQL} AS population, count(*) AS tickets \
         FROM incidents WHERE {filters} GROUP BY group_key, population",
        key = key_sql(group_by),
        filters = filter_sql(),
    )
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = Text)]
    group_key: String,
    #[diesel(sql_type = Text)]
    population: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Nullable<Double>)]
    mean: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    median: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p90: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p95: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    max: Option<f64>,
    #[diesel(sql_type = BigInt)]
    negative: i64,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = Text)]
    group_key: String,
    #[diesel(sql_type = Text)]
    population: String,
    #[diesel(sql_type = BigInt)]
    tickets: i64,
}

#[derive(QueryableByName)]
struct TicketIdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    ticket_id: Uuid,
}

fn bind_filters<'a>(sql: String, filters: &Filters) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Array<Text>, _>(filters.severities.clone())
        .bind::<Array<Text>, _>(filters.categories.clone())
        .bind::<Array<Text>, _>(filters.teams.clone())
        .bind::<Array<Text>, _>(filters.sources.clone())
        .bind::<Nullable<Bool>, _>(filters.imported)
}

fn bind_window<'a>(query: BoxedSqlQuery<'a, Pg, SqlQuery>, window: &Window) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    query
        .bind::<Nullable<Timestamptz>, _>(window.start)
        .bind::<Nullable<Timestamptz>, _>(window.end)
}

/// Runs the ticket count and the four metric queries in one read-only REPEATABLE READ
/// transaction, so every figure of the response comes from the same snapshot.
pub async fn response_metrics(
    pool: &docket_db::Pool,
    query: &MetricsQuery,
) -> Result<(Vec<TicketCount>, [(Metric, MetricResult); 4]), Error> {
    let mut conn = pool.get().await?;
    let result = conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run(async |conn| {
            let counts = ticket_counts(conn, query).await?;
            let [ttd, tta, ttc, ttr] = Metric::ALL;
            let results = [
                (ttd, metric_result(conn, ttd, query).await?),
                (tta, metric_result(conn, tta, query).await?),
                (ttc, metric_result(conn, ttc, query).await?),
                (ttr, metric_result(conn, ttr, query).await?),
            ];
            Ok::<_, Error>((counts, results))
        })
        .await?;
    Ok(result)
}

async fn ticket_counts(conn: &mut AsyncPgConnection, query: &MetricsQuery) -> Result<Vec<TicketCount>, Error> {
    let rows: Vec<CountRow> = bind_filters(ticket_count_sql(query.group_by), &query.filters).load(conn).await?;
    rows.into_iter()
        .map(|row| {
            Ok(TicketCount {
                population: parse_population(&row.population)?,
                key: row.group_key,
                tickets: row.tickets,
            })
        })
        .collect()
}

async fn metric_result(conn: &mut AsyncPgConnection, metric: Metric, query: &MetricsQuery) -> Result<MetricResult, Error> {
    let statement = bind_window(bind_filters(stats_sql(metric, query.group_by), &query.filters), &query.window);
    let rows: Vec<StatsRow> = statement.load(conn).await?;

    let mut result = MetricResult::default();
    for row in rows {
        result.negative_count += row.negative;
        result.rows.push(MetricRow {
            population: parse_population(&row.population)?,
            key: row.group_key,
            stats: DurationStats {
                count: row.count,
                mean: row.mean.unwrap_or_default(),
                median: row.median.unwrap_or_default(),
                p90: row.p90.unwrap_or_default(),
                p95: row.p95.unwrap_or_default(),
                max: row.max.unwrap_or_default(),
            },
        });
    }

    if result.negative_count > 0 {
        let statement = bind_window(bind_filters(negative_sample_sql(metric), &query.filters), &query.window);
        let rows: Vec<TicketIdRow> = statement.load(conn).await?;
        result.negative_ticket_ids = rows.into_iter().map(|row| row.ticket_id).collect();
    }
    Ok(result)
}

fn parse_population(text: &str) -> Result<Population, Error> {
    // The SQL above produces only the four names, so another value means the SQL and
    // `Population::as_str` disagree.
    Population::parse(text).ok_or_else(|| {
        Error::Database(docket_db::DbError::Query(diesel::result::Error::DeserializationError(
            format!("unexpected population {text:?} from the metrics query").into(),
        )))
    })
}
