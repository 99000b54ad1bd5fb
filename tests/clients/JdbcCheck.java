import java.sql.*;
import java.util.*;

/**
 * The PostgreSQL JDBC driver (pgjdbc: DBeaver, DataGrip, Metabase) against the Postgres endpoint.
 * Run by tests/test_jdbc.py: java JdbcCheck URL; the token comes as $GREENERY_API_TOKEN.
 * Prints one line per finding, "name<TAB>value<TAB>value…", for the test to compare.
 */
public class JdbcCheck {
    static void print(String name, Object... values) {
        StringBuilder line = new StringBuilder(name);
        for (Object value : values) line.append('\t').append(value);
        System.out.println(line);
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> values = new ArrayList<>();
        while (rs.next()) values.add(rs.getString(name));
        rs.close();
        return values;
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "analyst");
        props.setProperty("password", System.getenv().getOrDefault("GREENERY_API_TOKEN", ""));
        try (Connection c = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData md = c.getMetaData();
            print("product", md.getDatabaseProductName(), md.getDatabaseProductVersion());
            print("schemas", String.join(",", column(md.getSchemas(), "TABLE_SCHEM")));
            print("tables", String.join(",", column(md.getTables(null, "semantic_layer", "%", new String[]{"TABLE"}), "TABLE_NAME")));
            try (ResultSet rs = md.getColumns(null, "semantic_layer", "orders", "%")) {
                while (rs.next()) print("column", rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
            }
            print("primary_keys", column(md.getPrimaryKeys(null, "semantic_layer", "orders"), "COLUMN_NAME").size());
            print("imported_keys", column(md.getImportedKeys(null, "semantic_layer", "orders"), "PKCOLUMN_NAME").size());
            print("indexes", column(md.getIndexInfo(null, "semantic_layer", "orders", false, true), "INDEX_NAME").size());
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("select sessions_with_page_view, sessions_with_add_to_cart, sessions_with_checkout from semantic_layer.funnel_overall")) {
                rs.next();
                print("funnel", rs.getLong(1), rs.getLong(2), rs.getLong(3));
            }
            // past prepareThreshold (5 executions) pgjdbc names a server-side statement and reads binary
            try (PreparedStatement p = c.prepareStatement(
                    "select metric_time__day, orders from semantic_layer.orders where metric_time__day >= ? order by 1")) {
                for (int i = 0; i < 7; i++) {
                    p.setTimestamp(1, Timestamp.valueOf("2021-02-11 00:00:00"));
                    try (ResultSet rs = p.executeQuery()) {
                        while (rs.next()) print("prepared_" + i, rs.getTimestamp(1).toLocalDateTime().toLocalDate(), rs.getLong(2));
                    }
                }
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(2);  // a portal read two rows at a time
                try (ResultSet rs = s.executeQuery("select user__state, orders from semantic_layer.orders order by 1")) {
                    while (rs.next()) print("state", rs.getString(1), rs.getLong(2));
                }
            }
            c.rollback();
            try (Statement s = c.createStatement()) {
                s.executeQuery("select nope from semantic_layer.orders");
            } catch (SQLException e) {
                print("error", e.getSQLState());
                c.rollback();
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select 1")) {
                rs.next();
                print("after_error", rs.getInt(1));
            }
        }
    }
}
