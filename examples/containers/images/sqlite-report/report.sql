-- sqlite-report: run after `.import --csv /input/NAME sales`.
-- Money is kept in integer cents and formatted with integer arithmetic, so
-- no floating point reaches the output. Every query has a total ORDER BY.
.bail on
.headers on
.mode csv
CREATE TABLE s AS
SELECT date,
       region,
       product,
       CAST(units AS INTEGER) AS units,
       CAST(unit_price_cents AS INTEGER) AS price,
       CAST(units AS INTEGER) * CAST(unit_price_cents AS INTEGER) AS revenue
  FROM sales;
CREATE TEMP VIEW bad AS
SELECT count(*) AS n FROM s
 WHERE date NOT GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'
    OR units <= 0 OR price < 0;

.output /output/by_month_region.csv
SELECT substr(date, 1, 7) AS month,
       region,
       count(*) AS orders,
       sum(units) AS units,
       printf('%d.%02d', sum(revenue) / 100, sum(revenue) % 100) AS revenue
  FROM s
 GROUP BY 1, 2
 ORDER BY 1, 2;

.output /output/by_product.csv
SELECT rank() OVER (ORDER BY sum(revenue) DESC, product) AS rank,
       product,
       count(*) AS orders,
       sum(units) AS units,
       printf('%d.%02d', sum(revenue) / 100, sum(revenue) % 100) AS revenue,
       printf('%d.%02d', sum(revenue) * 10000 / (SELECT sum(revenue) FROM s) / 100,
              sum(revenue) * 10000 / (SELECT sum(revenue) FROM s) % 100) AS share_pct,
       max(units) AS largest_order
  FROM s
 GROUP BY product
 ORDER BY 1, 2;

.output /output/top_days.csv
WITH d AS (SELECT date, sum(revenue) AS cents, count(*) AS orders FROM s GROUP BY date)
SELECT date,
       orders,
       printf('%d.%02d', cents / 100, cents % 100) AS revenue,
       printf('%d.%02d', sum(cents) OVER w / 100, sum(cents) OVER w % 100) AS cumulative
  FROM d
WINDOW w AS (ORDER BY cents DESC, date ROWS UNBOUNDED PRECEDING)
 ORDER BY cents DESC, date
 LIMIT 10;

.output stdout
.headers off
.mode list
.separator ": "
SELECT 'rows', count(*) FROM s;
SELECT 'rejected rows', n FROM bad;
SELECT 'first day', min(date) FROM s;
SELECT 'last day', max(date) FROM s;
SELECT 'units', sum(units) FROM s;
SELECT 'revenue', printf('%d.%02d', sum(revenue) / 100, sum(revenue) % 100) FROM s;
SELECT 'best region', region || ' ' || printf('%d.%02d', r / 100, r % 100)
  FROM (SELECT region, sum(revenue) AS r FROM s GROUP BY region ORDER BY r DESC, region LIMIT 1);
SELECT 'best product', product || ' ' || printf('%d.%02d', r / 100, r % 100)
  FROM (SELECT product, sum(revenue) AS r FROM s GROUP BY product ORDER BY r DESC, product LIMIT 1);
SELECT 'sqlite', sqlite_version();
