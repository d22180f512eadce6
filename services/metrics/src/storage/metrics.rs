//! Response-time statistics computed in PostgreSQL, one grouped query for all four
//! metrics, so no ticket rows leave the database.

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Bool, Double, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
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

/// Returns the window condition of one metric (binds $6 and $7) on its end instant. The
/// comparison also excludes rows whose end is unset.
fn window_condition(metric: &MetricSql) -> String {
    format!(
        "{end} >= COALESCE($6::timestamptz, '-infinity'::timestamptz) \
         AND {end} < COALESCE($7::timestamptz, 'infinity'::timestamptz)",
        end = metric.end,
    )
}

/// Rows of one metric's sample: its population, within the window and the filters.
fn sample_condition(metric: &MetricSql) -> String {
    format!(
        "{filters} AND {population} AND {window}",
        filters = filter_sql(),
        population = metric.population,
        window = window_condition(metric),
    )
}

/// Duration in seconds, equal to the exact microsecond difference rounded once to double
/// precision. date_part on the interval computes in double precision, and below 2^31 s
/// (68 years) its error is at most one unit in the last place, 0.24 µs, so rounding to
/// whole microseconds recovers the exact difference. It is several times faster than the
/// numeric EXTRACT, whose conversion to double precision goes through text.
fn duration_sql(metric: &MetricSql) -> String {
    format!("round(date_part('epoch', {} - {}) * 1000000) / 1000000", metric.end, metric.start)
}

/// Statistics of all four metrics per group in one pass over the rows: the inner query
/// computes each row's four durations, NULL where the row is outside that metric's
/// population or window, and the aggregates skip the NULLs. percentile_disc returns the
/// value at rank ceil(p × n) of the sorted sample, which is the exact nearest-rank
/// percentile. One call with the three fractions sorts each sample once.
///
/// With a window, the outer condition keeps rows whose end instant of any metric lies in
/// the window, which the partial index on each end instant finds without reading the
/// rest of the table. Without one, every row matching the filters is read once.
fn stats_sql(group_by: GroupBy, windowed: bool) -> String {
    let mut durations = Vec::new();
    let mut aggregates = Vec::new();
    let mut windows = Vec::new();
    for metric in Metric::ALL {
        let name = metric.as_str();
        let sql = metric_sql(metric);
        let window = window_condition(&sql);
        durations.push(format!(
            "CASE WHEN {population} AND {window} THEN {duration} END AS {name}",
            population = sql.population,
            duration = duration_sql(&sql),
        ));
        aggregates.push(format!(
            "count({name}) AS {name}_count, avg({name}) AS {name}_mean, \
             percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY {name}) FILTER (WHERE {name} IS NOT NULL) AS {name}_percentiles, \
             max({name}) AS {name}_max, count(*) FILTER (WHERE {name} < 0) AS {name}_negative"
        ));
        windows.push(format!("({window})"));
    }
    let condition = if windowed {
        format!("{} AND ({})", filter_sql(), windows.join(" OR "))
    } else {
        filter_sql()
    };
    format!(
        "SELECT group_key, population, {aggregates} \
         FROM (SELECT {key} AS group_key, {POPULATION_SQL} AS population, {durations} \
               FROM incidents WHERE {condition}) AS sample \
         GROUP BY group_key, population",
        aggregates = aggregates.join(", "),
        key = key_sql(group_by),
        durations = durations.join(", "),
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

/// Ticket counts per group from `incident_counts`, which triggers keep equal to the
/// counts over `incidents`, so a windowed query does not read the whole projection. The
/// table has the filtered columns of `incidents` under the same names.
fn ticket_count_sql(group_by: GroupBy) -> String {
    format!(
        "SELECT {key} AS group_key, {POPULATION_SQL} AS population, sum(tickets)::bigint AS tickets \
         FROM incident_counts WHERE {filters} GROUP BY group_key, population HAVING sum(tickets) > 0",
        key = key_sql(group_by),
        filters = filter_sql(),
    )
}

/// One group and population with the statistics of the four metrics, named by
/// `Metric::as_str`.
#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = Text)]
    group_key: String,
    #[diesel(sql_type = Text)]
    population: String,
    #[diesel(sql_type = BigInt)]
    ttd_count: i64,
    #[diesel(sql_type = Nullable<Double>)]
    ttd_mean: Option<f64>,
    #[diesel(sql_type = Nullable<Array<Nullable<Double>>>)]
    ttd_percentiles: Option<Vec<Option<f64>>>,
    #[diesel(sql_type = Nullable<Double>)]
    ttd_max: Option<f64>,
    #[diesel(sql_type = BigInt)]
    ttd_negative: i64,
    #[diesel(sql_type = BigInt)]
    tta_count: i64,
    #[diesel(sql_type = Nullable<Double>)]
    tta_mean: Option<f64>,
    #[diesel(sql_type = Nullable<Array<Nullable<Double>>>)]
    tta_percentiles: Option<Vec<Option<f64>>>,
    #[diesel(sql_type = Nullable<Double>)]
    tta_max: Option<f64>,
    #[diesel(sql_type = BigInt)]
    tta_negative: i64,
    #[diesel(sql_type = BigInt)]
    ttc_count: i64,
    #[diesel(sql_type = Nullable<Double>)]
    ttc_mean: Option<f64>,
    #[diesel(sql_type = Nullable<Array<Nullable<Double>>>)]
    ttc_percentiles: Option<Vec<Option<f64>>>,
    #[diesel(sql_type = Nullable<Double>)]
    ttc_max: Option<f64>,
    #[diesel(sql_type = BigInt)]
    ttc_negative: i64,
    #[diesel(sql_type = BigInt)]
    ttr_count: i64,
    #[diesel(sql_type = Nullable<Double>)]
    ttr_mean: Option<f64>,
    #[diesel(sql_type = Nullable<Array<Nullable<Double>>>)]
    ttr_percentiles: Option<Vec<Option<f64>>>,
    #[diesel(sql_type = Nullable<Double>)]
    ttr_max: Option<f64>,
    #[diesel(sql_type = BigInt)]
    ttr_negative: i64,
}

/// Figures of one metric in a [`StatsRow`].
struct MetricColumns {
    count: i64,
    mean: Option<f64>,
    percentiles: Option<Vec<Option<f64>>>,
    max: Option<f64>,
    negative: i64,
}

impl StatsRow {
    fn metric(&self, metric: Metric) -> MetricColumns {
        let (count, mean, percentiles, max, negative) = match metric {
            Metric::Ttd => (self.ttd_count, self.ttd_mean, &self.ttd_percentiles, self.ttd_max, self.ttd_negative),
            Metric::Tta => (self.tta_count, self.tta_mean, &self.tta_percentiles, self.tta_max, self.tta_negative),
            Metric::Ttc => (self.ttc_count, self.ttc_mean, &self.ttc_percentiles, self.ttc_max, self.ttc_negative),
            Metric::Ttr => (self.ttr_count, self.ttr_mean, &self.ttr_percentiles, self.ttr_max, self.ttr_negative),
        };
        MetricColumns {
            count,
            mean,
            percentiles: percentiles.clone(),
            max,
            negative,
        }
    }
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

/// Memory for each sort of one query, so the percentile sorts of a large group stay in
/// memory instead of spilling to temporary files. PostgreSQL's default is 4 MB.
const QUERY_WORK_MEM: &str = "64MB";

/// Runs the ticket count and the statistics query in one read-only REPEATABLE READ
/// transaction, so every figure of the response comes from the same snapshot.
///
/// JIT compilation is off for the transaction, because PostgreSQL starts it for the cost of
/// a query over a large projection, and compiling took longer than it saved.
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
            conn.batch_execute(&format!("SET LOCAL jit = off; SET LOCAL work_mem = '{QUERY_WORK_MEM}'"))
                .await?;
            let counts = ticket_counts(conn, query).await?;
            let results = metric_results(conn, query).await?;
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

async fn metric_results(conn: &mut AsyncPgConnection, query: &MetricsQuery) -> Result<[(Metric, MetricResult); 4], Error> {
    let windowed = query.window.start.is_some() || query.window.end.is_some();
    let statement = bind_window(bind_filters(stats_sql(query.group_by, windowed), &query.filters), &query.window);
    let rows: Vec<StatsRow> = statement.load(conn).await?;

    let mut results = Metric::ALL.map(|metric| (metric, MetricResult::default()));
    for row in &rows {
        let population = parse_population(&row.population)?;
        for (metric, result) in &mut results {
            let columns = row.metric(*metric);
            // A group without a sample for this metric gets no row, as a group that a
            // query per metric would not have returned.
            if columns.count == 0 {
                continue;
            }
            let percentile = |index: usize| {
                columns
                    .percentiles
                    .as_ref()
                    .and_then(|values| values.get(index).copied().flatten())
                    .unwrap_or_default()
            };
            result.negative_count += columns.negative;
            result.rows.push(MetricRow {
                population,
                key: row.group_key.clone(),
                stats: DurationStats {
                    count: columns.count,
                    mean: columns.mean.unwrap_or_default(),
                    median: percentile(0),
                    p90: percentile(1),
                    p95: percentile(2),
                    max: columns.max.unwrap_or_default(),
                },
            });
        }
    }

    for (metric, result) in &mut results {
        if result.negative_count > 0 {
            let statement = bind_window(bind_filters(negative_sample_sql(*metric), &query.filters), &query.window);
            let rows: Vec<TicketIdRow> = statement.load(conn).await?;
            result.negative_ticket_ids = rows.into_iter().map(|row| row.ticket_id).collect();
        }
    }
    Ok(results)
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
